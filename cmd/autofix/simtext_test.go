package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/sim"
)

// textResult is the part of simulate --json's result about the failure text.
type textResult struct {
	Text             string   `json:"text"`
	Failed           int      `json:"failed"`
	Remediable       int      `json:"remediable"`
	RealText         int      `json:"realText"`
	RenderedFallback int      `json:"renderedFallback"`
	NoRealText       []string `json:"noRealText"`
}

func TestSimulateWithRealText(t *testing.T) {
	simulate := func(args ...string) textResult {
		t.Helper()
		code, out, errOut := runCmd(t, "", append([]string{"simulate", "--policy", "same", "--jobs", "1500", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("simulate %v: exit %d: %s", args, code, errOut)
		}
		var r textResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("simulate %v: %v\n%s", args, err, out)
		}
		return r
	}
	rendered, real := simulate(), simulate("--text", "real")
	if rendered.Text != "rendered" || rendered.RealText != 0 || rendered.RenderedFallback != 0 {
		t.Errorf("without --text: %+v, want rendered text and no counts", rendered)
	}
	if real.Text != "real" || real.RealText == 0 {
		t.Errorf("--text real: %+v, want real text carried by some events", real)
	}
	if (real.RenderedFallback == 0) != (len(real.NoRealText) == 0) {
		t.Errorf("--text real: %d events kept the rendered text, of causes %v", real.RenderedFallback, real.NoRealText)
	}
	if real.Failed != rendered.Failed || real.Remediable != rendered.Remediable {
		t.Errorf("failed/remediable %d/%d with real text, %d/%d rendered: the workload must not depend on the text",
			real.Failed, real.Remediable, rendered.Failed, rendered.Remediable)
	}
	if explicit := simulate("--text", "rendered"); !reflect.DeepEqual(explicit, rendered) {
		t.Errorf("--text rendered = %+v, want %+v as without --text", explicit, rendered)
	}

	code, out, errOut := runCmd(t, "", "simulate", "--policy", "same", "--jobs", "1500", "--text", "real")
	if code != 0 || !strings.Contains(out, "text: real. Of the ") {
		t.Errorf("simulate --text real: exit %d, stderr %q; want the table followed by the text counts:\n%s", code, errOut, out)
	}
	code, out, _ = runCmd(t, "", "simulate", "--policy", "same", "--jobs", "1500")
	if code != 0 || strings.Contains(out, "text: ") {
		t.Errorf("simulate: exit %d; want no text counts for rendered text:\n%s", code, out)
	}
}

func TestTextFlagRejectsUnknownSources(t *testing.T) {
	const want = `--text: want rendered or real, got "printed"`
	for _, args := range [][]string{
		{"simulate", "--text", "printed"},
		{"bench", "ingest", "--text", "printed"},
		{"bench", "api", "--text", "printed"},
	} {
		code, _, errOut := runCmd(t, "", args...)
		if code == 0 || !strings.Contains(errOut, want) {
			t.Errorf("%v: exit %d, stderr %q; want an error containing %q", args, code, errOut, want)
		}
	}
}

func TestWriteTextCounts(t *testing.T) {
	for _, tt := range []struct {
		name    string
		results []sim.Result
		want    string
	}{
		{"rendered", []sim.Result{{Text: sim.TextRendered}}, ""},
		{"real, nothing seen", []sim.Result{{Text: sim.TextReal}}, ""},
		{"real, all of it", []sim.Result{{Text: sim.TextReal, RealText: 7}, {Text: sim.TextReal, RealText: 3}},
			"\ntext: real. Of the 10 failure events the policies saw, 10 carried a real labelled message; none kept the rendered text.\n"},
		{"real, some rendered", []sim.Result{
			{Text: sim.TextReal, RealText: 7, RenderedFallback: 2, NoRealText: []failure.Category{failure.Timeout}},
			{Text: sim.TextReal, RealText: 3, RenderedFallback: 1, NoRealText: []failure.Category{failure.Timeout, failure.Hardware}},
		}, "\ntext: real. Of the 13 failure events the policies saw, 10 carried a real labelled message and 3 kept the rendered text: no real message of timeout, hardware.\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			writeTextCounts(&b, tt.results)
			if got := b.String(); got != tt.want {
				t.Errorf("writeTextCounts = %q, want %q", got, tt.want)
			}
		})
	}
}

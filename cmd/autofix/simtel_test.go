package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/autofix/autofix/sim"
)

func TestSimulateTelemetry(t *testing.T) {
	for _, tel := range []string{"all", "failures", "none"} {
		code, out, errOut := runCmd(t, "", "simulate", "--policy", "vpa", "--jobs", "1500", "--telemetry", tel, "--json")
		if code != 0 {
			t.Fatalf("--telemetry %s: exit %d: %s", tel, code, errOut)
		}
		var r sim.Result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if string(r.Telemetry) != tel || r.Failed == 0 {
			t.Errorf("--telemetry %s: result telemetry %q, %d failed", tel, r.Telemetry, r.Failed)
		}
	}
	code, _, errOut := runCmd(t, "", "simulate", "--telemetry", "prometheus")
	if code == 0 || !strings.Contains(errOut, `--telemetry: want all, failures or none, got "prometheus"`) {
		t.Errorf("--telemetry prometheus: exit %d, %q; want the flag named", code, errOut)
	}
}

func TestSimulateSeeds(t *testing.T) {
	code, out, errOut := runCmd(t, "", "simulate", "--policy", "double,same", "--jobs", "800", "--seeds", "3", "--seed", "11", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Summaries []SeedSummary `json:"summaries"`
		Results   []sim.Result  `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Results) != 6 || len(got.Summaries) != 2 || got.Summaries[0].Policy != "double" || got.Summaries[1].Policy != "same" {
		t.Fatalf("%d results, summaries %+v: want 3 seeds of double and same", len(got.Results), got.Summaries)
	}
	s := got.Summaries[0]
	if len(s.Seeds) != 3 || s.Seeds[0] != 11 || s.Seeds[2] != 13 {
		t.Errorf("seeds %v, want 11, 12, 13", s.Seeds)
	}
	mean := 0.0
	for _, r := range got.Results[:3] {
		mean += r.FirstRetryRate / 3
	}
	if i := s.FirstRetryRate; math.Abs(i.Mean-mean) > 1e-9 || !(i.Lo <= i.Mean && i.Mean <= i.Hi) || i.Lo == i.Hi {
		t.Errorf("first-retry interval %+v, want the mean %v inside a spread", i, mean)
	}
	code, out, errOut = runCmd(t, "", "simulate", "--policy", "double", "--jobs", "800", "--seeds", "2")
	if code != 0 || !strings.Contains(out, "mean [95% interval]") || !strings.Contains(out, "double") {
		t.Errorf("table: exit %d, %s %s", code, out, errOut)
	}
	for _, args := range [][]string{{"--seeds", "-1"}, {"--seeds", "101"}, {"--seeds", "2", "--compare", "--plot", "x.png"}} {
		if code, _, _ := runCmd(t, "", append([]string{"simulate", "--jobs", "100"}, args...)...); code == 0 {
			t.Errorf("simulate %v: exit 0, want an error", args)
		}
	}
}

func TestInterval95(t *testing.T) {
	for _, c := range []struct {
		xs           []float64
		mean, lo, hi float64
	}{
		{[]float64{1}, 1, 1, 1},
		// mean 2, sd 1, n 3: t(0.975, 2) = 4.303, half-width 4.303/sqrt(3).
		{[]float64{1, 2, 3}, 2, 2 - 4.302653/math.Sqrt(3), 2 + 4.302653/math.Sqrt(3)},
	} {
		got := interval95(c.xs)
		if math.Abs(got.Mean-c.mean) > 1e-9 || math.Abs(got.Lo-c.lo) > 1e-5 || math.Abs(got.Hi-c.hi) > 1e-5 {
			t.Errorf("interval95(%v) = %+v, want %v [%v, %v]", c.xs, got, c.mean, c.lo, c.hi)
		}
	}
}

func TestTrainTelemetryFlag(t *testing.T) {
	for _, c := range []struct{ value, want string }{
		{"all,metrics", `--telemetry: want all, failures or none, got "metrics"`},
		{"all,all", "--telemetry: all twice"},
	} {
		code, _, errOut := runCmd(t, "", "train", "--jobs", "200", "--templates", "50", "--telemetry", c.value)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("train --telemetry %s: exit %d, %q; want %q", c.value, code, errOut, c.want)
		}
	}
}

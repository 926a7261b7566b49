package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autofix/autofix/sim"
)

func TestBenchPoliciesRejectsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--seeds", "1"}, "--seeds 1: want 2 to 100"},
		{[]string{"--seeds", "101"}, "--seeds 101: want 2 to 100"},
		{[]string{"--jobs", "-1"}, "--jobs -1: want a positive number"},
		{[]string{"--scenarios", "default,nope"}, `--scenarios: nope: no built-in scenario "nope"`},
		{[]string{"--scenarios", "default,default"}, "--scenarios: default twice"},
		{[]string{"--scenarios", "default,"}, "--scenarios: empty scenario name"},
		{[]string{"--telemetry", "all,prometheus"}, `--telemetry: want all, failures or none, got "prometheus"`},
		{[]string{"--text", "rendered,printed"}, `--text: want rendered or real, got "printed"`},
		{[]string{"--policies", "autofix,triple"}, `--policies: unknown policy "triple" (want none, same, double, vpa, autofix, oracle)`},
		{[]string{"--on-call-minutes", "-5"}, "--on-call-minutes: want 0 to 10080, got -5"},
		{[]string{"--on-call-rate", "1e6"}, "--on-call-rate: want 0 to 10000 dollars, got 1e+06"},
		{[]string{"--on-call-rate", "lots"}, `"--on-call-rate"`},
		{[]string{"--scenarios", "default", "--telemetry", "all", "--text", "rendered", "--policies", "autofix",
			"--jobs", "10", "--models", filepath.Join(t.TempDir(), "none.json")}, "--models: "},
	} {
		code, out, errOut := runCmd(t, "", append([]string{"bench", "policies"}, c.args...)...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("bench policies %v: exit %d, stderr %q; want an error naming %q", c.args, code, errOut, c.want)
		}
		if out != "" {
			t.Errorf("bench policies %v printed %q before failing", c.args, out)
		}
	}
}

// TestBenchPoliciesSmoke runs a tiny benchmark: two scenarios, two telemetry
// settings, two seeds, 300 runs.
func TestBenchPoliciesSmoke(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCmd(t, "", "bench", "policies", "--scenarios", "default,tight", "--telemetry", "all,none",
		"--text", "rendered", "--seeds", "2", "--jobs", "300", "--policies", "none,double,autofix,oracle", "--plot-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Mean [95% interval] over 2 seeds",
		"30 min of on-call time at $100/h ($50.00)",
		"| policy | `default` | `tight` |",
		"| oracle | 1.00x [1.00x, 1.00x] (1.000) | 1.00x [1.00x, 1.00x] (1.000) |",
		"| `default` | all | rendered |", "| `default` | none | rendered |",
		"| `tight` | all | rendered |", "| `tight` | none | rendered |",
		"#### `tight`, telemetry none, rendered text",
		"tight; seeds 4242 to 4243, 300 runs each.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n| **autofix** |"); n != 1+4 {
		t.Errorf("%d autofix rows in the headline and the full tables, want 1 + 4:\n%s", n, out)
	}
	if !strings.Contains(errOut, "[4/4] tight, telemetry none, text rendered") {
		t.Errorf("no progress on stderr: %q", errOut)
	}
	// Plots for the first setting only.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "policies-default.png policies-tight.png" {
		t.Errorf("plots %v, want policies-default.png and policies-tight.png", names)
	}
}

// TestBenchPoliciesJSON checks the summaries against the results they summarize,
// with a person's time priced at nothing: doing nothing then costs what the oracle
// spends.
func TestBenchPoliciesJSON(t *testing.T) {
	code, out, errOut := runCmd(t, "", "bench", "policies", "--scenarios", "default", "--telemetry", "all",
		"--text", "rendered,real", "--seeds", "3", "--seed", "11", "--jobs", "400", "--policies", "none,oracle",
		"--on-call-minutes", "0", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		OnCall    sim.OnCall     `json:"onCall"`
		Summaries []SeedSummary  `json:"summaries"`
		Results   []pricedResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.OnCall != (sim.OnCall{Minutes: 0, RatePerHour: 100}) || len(got.Summaries) != 4 || len(got.Results) != 12 {
		t.Fatalf("on-call %+v, %d summaries, %d results: want 0 minutes at $100, 2 texts x 2 policies, x 3 seeds",
			got.OnCall, len(got.Summaries), len(got.Results))
	}
	for i, s := range got.Summaries {
		rs := got.Results[3*i : 3*i+3]
		mean := 0.0
		for _, r := range rs {
			if r.Policy != s.Policy || r.Text != s.Text {
				t.Fatalf("summary %d (%s, %s) is followed by a result of %s, %s", i, s.Policy, s.Text, r.Policy, r.Text)
			}
			mean += r.Priced.CostPerFix / 3
			if r.Policy == "none" && r.OracleUnfixed == 0 && math.Abs(r.Priced.VsOracle-1) > 1e-9 {
				t.Errorf("none, seed %d, %s text: %vx the oracle with no on-call time, want 1x", r.Seed, r.Text, r.Priced.VsOracle)
			}
		}
		if math.Abs(s.CostPerFix.Mean-mean) > 1e-9 || s.CostPerFix.Lo > mean || s.CostPerFix.Hi < mean {
			t.Errorf("%s, %s text: cost per fix %+v, want the results' mean %v inside", s.Policy, s.Text, s.CostPerFix, mean)
		}
		if want := []uint64{11, 12, 13}; len(s.Seeds) != 3 || s.Seeds[0] != want[0] || s.Seeds[2] != want[2] {
			t.Errorf("%s: seeds %v, want %v", s.Policy, s.Seeds, want)
		}
	}
	if got.Summaries[0].Text != sim.TextRendered || got.Summaries[2].Text != sim.TextReal {
		t.Errorf("texts %s, %s: want rendered, then real", got.Summaries[0].Text, got.Summaries[2].Text)
	}
}

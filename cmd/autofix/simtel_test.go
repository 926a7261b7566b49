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
	for _, args := range [][]string{{"--seeds", "-1"}, {"--seeds", "101"}, {"--seeds", "2", "--plot", "x.png"}} {
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

func TestInterval95ByHand(t *testing.T) {
	for _, c := range []struct {
		xs           []float64
		mean, lo, hi float64
	}{
		// mean 4; squares 4+0+0+0+4 = 8, sd sqrt(8/4) = 1.414214, se 1.414214/sqrt(5)
		// = 0.632456; t(0.975, 4) = 2.776445; half-width 1.755978.
		{[]float64{2, 4, 4, 4, 6}, 4, 4 - 1.755978, 4 + 1.755978},
		// mean 1.5; sd 0.707107, se 0.5; t(0.975, 1) = 12.706205; half-width 6.353102.
		{[]float64{1, 2}, 1.5, 1.5 - 6.353102, 1.5 + 6.353102},
		// No spread, no width.
		{[]float64{0.25, 0.25, 0.25}, 0.25, 0.25, 0.25},
		{nil, 0, 0, 0},
	} {
		got := interval95(c.xs)
		if math.Abs(got.Mean-c.mean) > 1e-9 || math.Abs(got.Lo-c.lo) > 1e-5 || math.Abs(got.Hi-c.hi) > 1e-5 {
			t.Errorf("interval95(%v) = %+v, want %v [%v, %v]", c.xs, got, c.mean, c.lo, c.hi)
		}
	}
	if got, want := (Interval{Mean: 0.9, Lo: 0.7, Hi: 1.1}).within(0, 1), (Interval{Mean: 0.9, Lo: 0.7, Hi: 1}); got != want {
		t.Errorf("within(0, 1) = %+v, want %+v", got, want)
	}
	if got, want := (Interval{Mean: 5, Lo: -3, Hi: 13}).within(0, math.Inf(1)), (Interval{Mean: 5, Lo: 0, Hi: 13}); got != want {
		t.Errorf("within(0, +Inf) = %+v, want %+v", got, want)
	}
}

// TestSummarizePricesEverySeed checks the cost per fixed failure over seeds against
// hand-computed figures.
func TestSummarizePricesEverySeed(t *testing.T) {
	results := []sim.Result{
		// Seed 1: 4 remediable, 3 fixed for $30; one re-run ($6) and $50 of time:
		// $86, $21.50 a failure; the oracle's $20: 4.3x.
		{Policy: "double", Seed: 1, Remediable: 4, Fixed: 3, FixRate: 0.75, Cost: 30, WastedCost: 10, OracleCost: 20, RerunCost: 6},
		// Seed 2: 2 remediable, both fixed for $10; the oracle's $8: $5 a failure, 1.25x.
		{Policy: "double", Seed: 2, Remediable: 2, Fixed: 2, FixRate: 1, Cost: 10, OracleCost: 8},
		{Policy: "oracle", Seed: 1, Remediable: 4, Fixed: 4, FixRate: 1, Cost: 20, OracleCost: 20},
		{Policy: "oracle", Seed: 2, Remediable: 2, Fixed: 2, FixRate: 1, Cost: 8, OracleCost: 8},
	}
	sums := summarize(results, sim.OnCall{Minutes: 30, RatePerHour: 100})
	if len(sums) != 2 || sums[0].Policy != "double" || sums[1].Policy != "oracle" {
		t.Fatalf("summaries %+v: want double, then oracle", sums)
	}
	d := sums[0]
	// Two values a, b: mean (a+b)/2, half-width t(0.975, 1) x |a-b|/2 = 12.706205 x |a-b|/2.
	half := func(a, b float64) float64 { return 12.706205 * math.Abs(a-b) / 2 }
	for _, c := range []struct {
		name      string
		got       Interval
		a, b, top float64
	}{
		{"cost per fix", d.CostPerFix, 21.5, 5, math.Inf(1)},
		{"vs oracle", d.VsOracle, 4.3, 1.25, math.Inf(1)},
		{"by hand", d.ManualCost, 56, 0, math.Inf(1)},
		{"fix rate", d.FixRate, 0.75, 1, 1},
		{"wasted", d.WastedCost, 10, 0, math.Inf(1)},
	} {
		mean := (c.a + c.b) / 2
		lo, hi := max(0, mean-half(c.a, c.b)), min(c.top, mean+half(c.a, c.b))
		if math.Abs(c.got.Mean-mean) > 1e-9 || math.Abs(c.got.Lo-lo) > 1e-4 || math.Abs(c.got.Hi-hi) > 1e-4 {
			t.Errorf("%s: %+v, want %v [%v, %v]", c.name, c.got, mean, lo, hi)
		}
	}
	if o := sums[1]; o.VsOracle != (Interval{Mean: 1, Lo: 1, Hi: 1}) || o.ManualCost != (Interval{}) {
		t.Errorf("oracle: vs oracle %+v, by hand %+v; want exactly 1 and 0", o.VsOracle, o.ManualCost)
	}
}

func TestDollars(t *testing.T) {
	for _, c := range []struct {
		x    float64
		d    int
		want string
	}{
		{0, 0, "0"}, {999.4, 0, "999"}, {1234.5, 2, "1,234.50"}, {1234567, 0, "1,234,567"},
		{-4119, 0, "-4,119"}, {-0.001, 2, "0.00"}, {120134, 0, "120,134"},
	} {
		if got := dollars(c.d)(c.x); got != c.want {
			t.Errorf("dollars(%d)(%v) = %q, want %q", c.d, c.x, got, c.want)
		}
	}
}

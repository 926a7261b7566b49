package main

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/autofix/autofix/sim"
)

// addTelemetryFlag registers --telemetry, what the simulated cluster measures of usage.
func addTelemetryFlag(cmd *cobra.Command, telemetry *string) {
	cmd.Flags().StringVar(telemetry, "telemetry", "", "usage the cluster measures: all (peaks on failures and outcomes), failures (only an OOMKilled run's limit and an eviction's figure, as without Prometheus) or none; default the scenario's")
}

// setTelemetry applies a --telemetry value to s; empty keeps the scenario's.
func setTelemetry(s *sim.Scenario, telemetry string) error {
	if telemetry == "" {
		return nil
	}
	t, err := sim.ParseTelemetry(telemetry)
	if err != nil {
		return fmt.Errorf("--telemetry: %w", err)
	}
	s.Telemetry = t
	return nil
}

// maxSeeds bounds --seeds.
const maxSeeds = 100

// Interval is a mean and its 95% confidence interval (Student's t over the seeds).
type Interval struct {
	Mean float64 `json:"mean"`
	Lo   float64 `json:"lo"`
	Hi   float64 `json:"hi"`
}

// SeedSummary is one policy's results over several seeds of a scenario.
type SeedSummary struct {
	Policy    string        `json:"policy"`
	Scenario  string        `json:"scenario"`
	Telemetry sim.Telemetry `json:"telemetry"`
	Text      sim.Text      `json:"text"`
	Seeds     []uint64      `json:"seeds"`
	// The Result fields of the same names, over the seeds.
	FixRate        Interval `json:"fixRate"`
	FirstRetryRate Interval `json:"firstRetryFixRate"`
	CostVsOracle   Interval `json:"costVsOracle"`
	Cost           Interval `json:"cost"`
	WastedCost     Interval `json:"wastedCost"`
	FalseRetries   Interval `json:"falseRetries"`
}

// summarize groups results by policy (in their order) and summarizes each policy's
// seeds.
func summarize(results []sim.Result) []SeedSummary {
	var out []SeedSummary
	index := map[string]int{}
	groups := [][]sim.Result{}
	for _, r := range results {
		i, ok := index[r.Policy]
		if !ok {
			i = len(groups)
			index[r.Policy] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], r)
	}
	for _, g := range groups {
		s := SeedSummary{Policy: g[0].Policy, Scenario: g[0].Scenario, Telemetry: g[0].Telemetry, Text: g[0].Text}
		field := func(f func(sim.Result) float64) Interval {
			xs := make([]float64, len(g))
			for i, r := range g {
				xs[i] = f(r)
			}
			return interval95(xs)
		}
		for _, r := range g {
			s.Seeds = append(s.Seeds, r.Seed)
		}
		s.FixRate = field(func(r sim.Result) float64 { return r.FixRate })
		s.FirstRetryRate = field(func(r sim.Result) float64 { return r.FirstRetryRate })
		s.CostVsOracle = field(func(r sim.Result) float64 { return r.CostVsOracle })
		s.Cost = field(func(r sim.Result) float64 { return r.Cost })
		s.WastedCost = field(func(r sim.Result) float64 { return r.WastedCost })
		s.FalseRetries = field(func(r sim.Result) float64 { return float64(r.FalseRetries) })
		out = append(out, s)
	}
	return out
}

// interval95 is the mean of xs and its 95% confidence interval by Student's t; one
// value has no spread to measure, and its interval is the value itself.
func interval95(xs []float64) Interval {
	n := float64(len(xs))
	if n == 0 {
		return Interval{}
	}
	mean := 0.0
	for _, x := range xs {
		mean += x
	}
	mean /= n
	if len(xs) < 2 {
		return Interval{Mean: mean, Lo: mean, Hi: mean}
	}
	ss := 0.0
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	se := math.Sqrt(ss/(n-1)) / math.Sqrt(n)
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: n - 1}.Quantile(0.975)
	return Interval{Mean: mean, Lo: mean - t*se, Hi: mean + t*se}
}

// writeSummaries prints each policy's means over the seeds with their 95% intervals.
func writeSummaries(w io.Writer, sums []SeedSummary) {
	if len(sums) == 0 {
		return
	}
	s0 := sums[0]
	fmt.Fprintf(w, "scenario %s, telemetry %s, text %s, seeds %v: mean [95%% interval]\n\n", s0.Scenario, s0.Telemetry, s0.Text, s0.Seeds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tfix rate\tfirst-retry\tvs oracle\tcost $\twasted $\tfalse retries\t")
	for _, s := range sums {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Policy,
			s.FixRate.format("%.3f"), s.FirstRetryRate.format("%.3f"), s.CostVsOracle.format("%.2fx"),
			s.Cost.format("%.0f"), s.WastedCost.format("%.0f"), s.FalseRetries.format("%.0f"))
	}
	_ = tw.Flush()
}

func (i Interval) format(f string) string {
	return fmt.Sprintf(f+" ["+f+", "+f+"]", i.Mean, i.Lo, i.Hi)
}

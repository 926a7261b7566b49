package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
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

// addOnCallFlags registers --on-call-minutes and --on-call-rate, the price of a
// person's time on a remediable failure a policy leaves unfixed.
func addOnCallFlags(cmd *cobra.Command, o *sim.OnCall) {
	*o = sim.DefaultOnCall
	cmd.Flags().Float64Var(&o.Minutes, "on-call-minutes", o.Minutes, "minutes of a person's time each remediable failure a policy leaves unfixed costs (noticing it, sizing it, re-running it by hand)")
	cmd.Flags().Float64Var(&o.RatePerHour, "on-call-rate", o.RatePerHour, "dollars an hour of that person's time costs")
}

// checkOnCall validates the --on-call-* flags' values, naming the flag.
func checkOnCall(o sim.OnCall) error {
	if err := o.Validate(); err != nil {
		flag := "--on-call-minutes"
		if strings.HasPrefix(err.Error(), "ratePerHour") {
			flag = "--on-call-rate"
		}
		_, msg, _ := strings.Cut(err.Error(), ": ")
		return fmt.Errorf("%s: %s", flag, msg)
	}
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

// SeedSummary is one policy's results over several seeds of a scenario. Each
// interval's ends are cut to the values the quantity can take (no rate below 0 or
// above 1, no cost below 0).
type SeedSummary struct {
	Policy    string        `json:"policy"`
	Scenario  string        `json:"scenario"`
	Telemetry sim.Telemetry `json:"telemetry"`
	Text      sim.Text      `json:"text"`
	Seeds     []uint64      `json:"seeds"`
	// OnCall prices the remediable failures the policy left unfixed.
	OnCall sim.OnCall `json:"onCall"`
	// The Result fields of the same names, over the seeds.
	FixRate        Interval `json:"fixRate"`
	FirstRetryRate Interval `json:"firstRetryFixRate"`
	CostVsOracle   Interval `json:"costVsOracle"`
	Cost           Interval `json:"cost"`
	WastedCost     Interval `json:"wastedCost"`
	FalseRetries   Interval `json:"falseRetries"`
	// The sim.Priced fields over the seeds: the cost per fixed failure and its ratio
	// to the oracle's; ManualCost is the priced re-runs and on-call time.
	CostPerFix Interval `json:"costPerFix"`
	VsOracle   Interval `json:"vsOracle"`
	ManualCost Interval `json:"manualCost"`
}

// summarize groups results by policy (in their order) and summarizes each policy's
// seeds, pricing unfixed failures with o.
func summarize(results []sim.Result, o sim.OnCall) []SeedSummary {
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
		s := SeedSummary{Policy: g[0].Policy, Scenario: g[0].Scenario, Telemetry: g[0].Telemetry, Text: g[0].Text, OnCall: o}
		priced := make([]sim.Priced, len(g))
		for i, r := range g {
			s.Seeds = append(s.Seeds, r.Seed)
			priced[i] = r.Price(o)
		}
		field := func(hi float64, f func(int) float64) Interval {
			xs := make([]float64, len(g))
			for i := range g {
				xs[i] = f(i)
			}
			return interval95(xs).within(0, hi)
		}
		inf := math.Inf(1)
		s.FixRate = field(1, func(i int) float64 { return g[i].FixRate })
		s.FirstRetryRate = field(1, func(i int) float64 { return g[i].FirstRetryRate })
		s.CostVsOracle = field(inf, func(i int) float64 { return g[i].CostVsOracle })
		s.Cost = field(inf, func(i int) float64 { return g[i].Cost })
		s.WastedCost = field(inf, func(i int) float64 { return g[i].WastedCost })
		s.FalseRetries = field(inf, func(i int) float64 { return float64(g[i].FalseRetries) })
		s.CostPerFix = field(inf, func(i int) float64 { return priced[i].CostPerFix })
		s.VsOracle = field(inf, func(i int) float64 { return priced[i].VsOracle })
		s.ManualCost = field(inf, func(i int) float64 { return priced[i].RerunCost + priced[i].OnCallCost })
		out = append(out, s)
	}
	return out
}

// interval95 is the mean of xs and its 95% confidence interval by Student's t with
// n-1 degrees of freedom: mean ± t(0.975, n-1) x sd / sqrt(n), sd the sample standard
// deviation. One value has no spread to measure, and its interval is the value itself.
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

// within cuts the interval's ends to [lo, hi], the values its quantity can take.
func (i Interval) within(lo, hi float64) Interval {
	i.Lo, i.Hi = min(max(i.Lo, lo), hi), min(max(i.Hi, lo), hi)
	return i
}

// writeSummaries prints each policy's means over the seeds with their 95% intervals.
func writeSummaries(w io.Writer, sums []SeedSummary) {
	if len(sums) == 0 {
		return
	}
	s0 := sums[0]
	fmt.Fprintf(w, "scenario %s, telemetry %s, text %s, seeds %v: mean [95%% interval]\n", s0.Scenario, s0.Telemetry, s0.Text, s0.Seeds)
	fmt.Fprintf(w, "%s\n\n", onCallNote("cost/fix", s0.OnCall))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tfix rate\tfirst-retry\tcost/fix $\tvs oracle\tspend $\twasted $\tby hand $\tfalse retries\tspend vs oracle\t")
	for _, s := range sums {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Policy,
			s.FixRate.show(fixed(3)), s.FirstRetryRate.show(fixed(3)), s.CostPerFix.show(dollars(2)), s.VsOracle.show(times),
			s.Cost.show(dollars(0)), s.WastedCost.show(dollars(0)), s.ManualCost.show(dollars(0)),
			s.FalseRetries.show(fixed(0)), s.CostVsOracle.show(times))
	}
	_ = tw.Flush()
}

// onCallNote says how the cost per fixed failure (named label) was priced.
func onCallNote(label string, o sim.OnCall) string {
	return fmt.Sprintf("%s: retry spend plus, for each remediable failure left unfixed, a re-run by hand at the oracle's price and %s min of on-call time at $%s/h ($%s), over the remediable failures", label,
		strconv.FormatFloat(o.Minutes, 'f', -1, 64), strconv.FormatFloat(o.RatePerHour, 'f', -1, 64), dollars(2)(o.PerFailure()))
}

// show formats the interval as "mean [lo, hi]" with f.
func (i Interval) show(f func(float64) string) string {
	return f(i.Mean) + " [" + f(i.Lo) + ", " + f(i.Hi) + "]"
}

// fixed formats with d decimals.
func fixed(d int) func(float64) string {
	return func(x float64) string { return strconv.FormatFloat(x, 'f', d, 64) }
}

// times formats a ratio as "1.23x".
func times(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) + "x" }

// dollars formats an amount with d decimals and thousands separated by commas.
func dollars(d int) func(float64) string {
	return func(x float64) string {
		s := strconv.FormatFloat(math.Abs(x), 'f', d, 64)
		whole, frac, _ := strings.Cut(s, ".")
		var b strings.Builder
		if x < 0 && strings.Trim(s, "0.") != "" {
			b.WriteByte('-')
		}
		for i, c := range whole {
			if i > 0 && (len(whole)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		if frac != "" {
			b.WriteString("." + frac)
		}
		return b.String()
	}
}

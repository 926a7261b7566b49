package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/sim"
)

type simulateOptions struct {
	policy    string
	scenario  string
	seed      uint64
	jobs      int
	retries   int
	json      bool
	compare   bool
	plot      string
	models    string
	text      string
	telemetry string
	seeds     int
	onCall    sim.OnCall
}

func newSimulateCmd() *cobra.Command {
	var o simulateOptions
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Run a retry policy on a simulated workload and measure it against the oracle",
		Long: `Simulate runs a scenario's jobs, fails them as a cluster would, and lets a policy
retry them: none, same (plain retry), double (Argo-style memory x2 per retry, GPUs x2
after a GPU OOM), vpa (max(1.2 x peak, peak + 100 MiB)), autofix, or oracle (knows the
true needs). Each failed run gets at most the scenario's retry budget (3 by default)
of retries. It prints the fix rate, first-retry fix rate, cost per fixed failure and
its ratio to the oracle's, retry spend, wasted spend (retries that failed), what the
failures left unfixed cost by hand, and false retries.

The cost per fixed failure counts every remediable failure as fixed in the end: by
the policy's retries, or by a person who re-runs the job at the right size (priced
as the oracle's runs of it) after --on-call-minutes of work at --on-call-rate dollars
an hour (30 minutes at $100 by default). It is the retry spend, false and failed
retries included, plus those re-runs and that time, over the remediable failures.
Retry spend alone ("spend vs oracle") makes a policy that fixes less look cheaper.

--compare runs every policy on the same jobs, prints a table and writes a PNG plot of
cost per fixed failure against fix rate (policies-SCENARIO.png, or --plot FILE;
--plot "" for none).

--text real gives each failure the text (reason, exit code, message, log tail) of a
real labelled message of its true cause's category instead of the simulator's own,
so that the classifier's real mistakes cost what they would on a cluster; the table
is followed by how many failure events carried real text.

--telemetry failures publishes only what a cluster without metrics shows (an
OOMKilled run's limit as its peak, an eviction's figure; no usage on outcomes),
--telemetry none no usage at all; the default, all, peaks on every failure and outcome.

--seeds N runs the scenario with N seeds (the scenario's, or --seed, and the next
ones) and prints each policy's mean and 95% interval (Student's t over the seeds)
instead; the plot then shows the means with their intervals. --policy takes a
comma-separated list of policies. bench policies runs every scenario, telemetry
setting and text source this way.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.policy, "policy", "autofix", "none, same, double, vpa, autofix or oracle; several, comma-separated")
	f.StringVar(&o.scenario, "scenario", "default", "built-in scenario name or scenario file")
	f.Uint64Var(&o.seed, "seed", 0, "override the scenario's seed")
	f.IntVar(&o.jobs, "jobs", 0, "runs to simulate (default: the scenario's)")
	f.IntVar(&o.retries, "retries", 0, "retry budget per failed run (default: the scenario's)")
	f.BoolVar(&o.json, "json", false, "print the result as JSON")
	f.BoolVar(&o.compare, "compare", false, "run every policy and print a table")
	f.StringVar(&o.plot, "plot", "", "with --compare, the PNG plot to write (default policies-SCENARIO.png)")
	f.StringVar(&o.models, "models", "", "models artifact to use (default: the embedded models)")
	f.IntVar(&o.seeds, "seeds", 0, "run this many seeds, from the scenario's (or --seed) up, and print means with 95% intervals")
	addTextFlag(cmd, &o.text)
	addTelemetryFlag(cmd, &o.telemetry)
	addOnCallFlags(cmd, &o.onCall)
	return cmd
}

func (o *simulateOptions) run(cmd *cobra.Command) error {
	s, err := loadScenario(o.scenario)
	if err != nil {
		return err
	}
	if o.seed != 0 {
		s.Seed = o.seed
	}
	if err := setText(s, o.text); err != nil {
		return err
	}
	if err := setTelemetry(s, o.telemetry); err != nil {
		return err
	}
	if o.seeds < 0 || o.seeds > maxSeeds {
		return fmt.Errorf("--seeds %d: want 1 to %d (0: one)", o.seeds, maxSeeds)
	}
	if o.jobs < 0 {
		return fmt.Errorf("--jobs %d: want a positive number (0: the scenario's)", o.jobs)
	}
	if err := checkOnCall(o.onCall); err != nil {
		return err
	}
	if o.retries != 0 {
		s.RetryBudget = o.retries
		if err := s.Validate(); err != nil {
			return fmt.Errorf("--retries %d: %w", o.retries, err)
		}
	}
	if o.plot != "" && !o.compare {
		return errors.New("--plot needs --compare")
	}
	if o.compare && !cmd.Flags().Changed("plot") {
		o.plot = "policies-" + fileSafe(s.Name) + ".png"
		if s.TextSource() == sim.TextReal {
			o.plot = "policies-" + fileSafe(s.Name) + "-realtext.png"
		}
	}
	policies := comparedPolicies
	if !o.compare {
		if policies, err = parseList("--policy", o.policy, parsePolicy); err != nil {
			return err
		}
	}
	runner, err := newPolicyRunner(o.models)
	if err != nil {
		return err
	}
	seeds := seedsFrom(s.Seed, o.seeds)
	results, err := runner.run(s, policies, seeds, o.jobs)
	if err != nil {
		return err
	}
	sums := summarize(results, o.onCall)
	if o.plot != "" {
		if err := plotSummaries(o.plot, s.Name, sums); err != nil {
			return err
		}
	}
	priced := make([]pricedResult, len(results))
	for i, r := range results {
		priced[i] = pricedResult{Result: r, Priced: r.Price(o.onCall)}
	}
	out := cmd.OutOrStdout()
	switch {
	case len(seeds) > 1 && o.json:
		return json.NewEncoder(out).Encode(map[string]any{"summaries": sums, "results": priced})
	case len(seeds) > 1:
		writeSummaries(out, sums)
	case o.json && len(priced) == 1:
		return json.NewEncoder(out).Encode(priced[0])
	case o.json:
		return json.NewEncoder(out).Encode(priced)
	default:
		writeResults(out, results, o.onCall)
	}
	if o.plot != "" {
		fmt.Fprintf(out, "\nwrote %s\n", o.plot)
	}
	return nil
}

// pricedResult is a result with its cost per fixed failure, as --json prints it.
type pricedResult struct {
	sim.Result
	Priced sim.Priced `json:"priced"`
}

// addTextFlag registers --text, where simulated failures' text comes from.
func addTextFlag(cmd *cobra.Command, text *string) {
	cmd.Flags().StringVar(text, "text", "", "failure text: rendered (the simulator's) or real (labelled real messages of each failure's category); default the scenario's")
}

// setText applies a --text value to s; empty keeps the scenario's.
func setText(s *sim.Scenario, text string) error {
	if text == "" {
		return nil
	}
	t, err := sim.ParseText(text)
	if err != nil {
		return fmt.Errorf("--text: %w", err)
	}
	s.Text = t
	return nil
}

func writeResults(w io.Writer, results []sim.Result, o sim.OnCall) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tjobs\tfailed\tremediable\tfixed\tfix rate\tfirst-retry\tcost/fix $\tvs oracle\tretries\tspend $\twasted $\tby hand $\tfalse retries\tspend vs oracle\t")
	for _, r := range results {
		p := r.Price(o)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%.2f\t%.2fx\t%d\t%.0f\t%.0f\t%.0f\t%d\t%.2fx\t\n",
			r.Policy, r.Jobs, r.Failed, r.Remediable, r.Fixed, r.FixRate, r.FirstRetryRate, p.CostPerFix, p.VsOracle,
			r.Retries, r.Cost, r.WastedCost, p.RerunCost+p.OnCallCost, r.FalseRetries, r.CostVsOracle)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%s.\n", onCallNote("cost/fix", o))
	writeTextCounts(w, results)
}

// writeTextCounts says, for results with real text, how many of the failure events the
// policies saw carried a real message and how many kept the rendered text, and of
// which causes.
func writeTextCounts(w io.Writer, results []sim.Result) {
	var real, fallback int
	var missing []string
	for _, r := range results {
		if r.Text != sim.TextReal {
			continue
		}
		real += r.RealText
		fallback += r.RenderedFallback
		for _, c := range r.NoRealText {
			if !slices.Contains(missing, string(c)) {
				missing = append(missing, string(c))
			}
		}
	}
	if real+fallback == 0 {
		return
	}
	fmt.Fprintf(w, "\ntext: real. Of the %d failure events the policies saw, %d carried a real labelled message", real+fallback, real)
	if fallback == 0 {
		fmt.Fprintln(w, "; none kept the rendered text.")
		return
	}
	fmt.Fprintf(w, " and %d kept the rendered text: no real message of %s.\n", fallback, strings.Join(missing, ", "))
}

// fileSafe keeps the letters, digits, '-' and '_' of name, for a file name.
func fileSafe(name string) string {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, name)
	if safe == "" {
		return "scenario"
	}
	return safe
}

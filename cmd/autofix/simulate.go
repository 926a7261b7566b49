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

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
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
of retries. It prints the fix rate, first-retry fix rate, cost against the oracle,
wasted cost and false retries.

--compare runs every policy on the same jobs, prints a table and writes a PNG plot of
cost against fix rate (policies-SCENARIO.png, or --plot FILE; --plot "" for none).

--text real gives each failure the text (reason, exit code, message, log tail) of a
real labelled message of its true cause's category instead of the simulator's own,
so that the classifier's real mistakes cost what they would on a cluster; the table
is followed by how many failure events carried real text.

--telemetry failures publishes only what a cluster without metrics shows (an
OOMKilled run's limit as its peak, an eviction's figure; no usage on outcomes),
--telemetry none no usage at all; the default, all, peaks on every failure and outcome.

--seeds N runs the scenario with N seeds (the scenario's, or --seed, and the next
ones) and prints each policy's mean and 95% interval over them. --policy takes a
comma-separated list of policies.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			if o.seeds > 1 && o.plot != "" {
				return errors.New("--plot needs a single seed")
			}
			if o.jobs < 0 {
				return fmt.Errorf("--jobs %d: want a positive number (0: the scenario's)", o.jobs)
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
			if o.compare && !cmd.Flags().Changed("plot") && o.seeds <= 1 {
				o.plot = "policies-" + fileSafe(s.Name) + ".png"
				if s.TextSource() == sim.TextReal {
					o.plot = "policies-" + fileSafe(s.Name) + "-realtext.png"
				}
			}
			policies := strings.Split(o.policy, ",")
			if o.compare {
				policies = append(sim.Baselines()[:4:4], "autofix", "oracle")
			}
			seeds := []uint64{s.Seed}
			for i := 1; i < o.seeds; i++ {
				seeds = append(seeds, s.Seed+uint64(i))
			}
			// The history a policy sees labels each failure with its classification,
			// as the ledger's does.
			c, err := loadClassifier("", config.Default().Classifier.MinConfidence)
			if err != nil {
				return err
			}
			classify := func(ev *failure.Event) failure.Category { return c.Classify(ev).Category }
			var results []sim.Result
			for _, name := range policies {
				p, err := o.policyFor(name, s)
				if err != nil {
					return err
				}
				for _, seed := range seeds {
					s.Seed = seed
					r, err := sim.Run(s, p, sim.Options{Jobs: o.jobs, Classify: classify})
					if err != nil {
						return err
					}
					results = append(results, r)
				}
			}
			if o.plot != "" {
				if err := plotResults(o.plot, s.Name, results); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			if len(seeds) > 1 {
				sums := summarize(results)
				if o.json {
					return json.NewEncoder(out).Encode(map[string]any{"summaries": sums, "results": results})
				}
				writeSummaries(out, sums)
				return nil
			}
			if o.json {
				enc := json.NewEncoder(out)
				if len(results) == 1 {
					return enc.Encode(results[0])
				}
				return enc.Encode(results)
			}
			writeResults(out, results)
			if o.plot != "" {
				fmt.Fprintf(out, "\nwrote %s\n", o.plot)
			}
			return nil
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
	return cmd
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

func (o *simulateOptions) policyFor(name string, s *sim.Scenario) (sim.Policy, error) {
	if name != "autofix" {
		return sim.Baseline(name)
	}
	c, err := loadClassifier("", config.Default().Classifier.MinConfidence)
	if err != nil {
		return nil, err
	}
	m, err := loadModels(o.models)
	if err != nil {
		return nil, err
	}
	return autofixPolicy{recommenderFor(s, c, m, nil)}, nil
}

func writeResults(w io.Writer, results []sim.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tjobs\tfailed\tremediable\tfixed\tfix rate\tfirst-retry\tretries\tcost $\tvs oracle\twasted $\tfalse retries\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%d\t%.0f\t%.2fx\t%.0f\t%d\t\n",
			r.Policy, r.Jobs, r.Failed, r.Remediable, r.Fixed, r.FixRate, r.FirstRetryRate, r.Retries, r.Cost, r.CostVsOracle, r.WastedCost, r.FalseRetries)
	}
	_ = tw.Flush()
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

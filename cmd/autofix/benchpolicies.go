package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/sim"
)

// defaultBenchScenarios are the scenarios docs/benchmark.md reports: the built-in
// ones and the two of sim/heldout (paths from the repository's root).
const defaultBenchScenarios = "default,tight,wide,llm,sim/heldout/drifting-platform.yaml,sim/heldout/frontier-lab.yaml"

type benchPoliciesOptions struct {
	scenarios string
	telemetry string
	text      string
	policies  string
	seeds     int
	seed      uint64
	jobs      int
	models    string
	json      bool
	plotDir   string
	onCall    sim.OnCall
}

func newBenchPoliciesCmd() *cobra.Command {
	var o benchPoliciesOptions
	cmd := &cobra.Command{
		Use:   "policies",
		Short: "The policy benchmark: every scenario, telemetry setting and failure text, over several seeds",
		Long: `Bench policies runs simulate's comparison of retry policies on each --scenarios
scenario with each --telemetry setting and each --text source, --seeds seeds each
(the scenario's own seed and the next ones, or --seed and the next), and prints
Markdown tables of each policy's mean and 95% interval over the seeds (Student's t
with n-1 degrees of freedom; the ends cut to the values the quantity can take):

  1. the ratio of each policy's cost per fixed failure to the oracle's, per scenario,
     with the first telemetry setting and text source;
  2. autofix in every setting;
  3. every policy in every setting, one table per scenario and setting.

The cost per fixed failure counts every remediable failure as fixed in the end: by
the policy, or by a person who re-runs the job at the right size (priced as the
oracle's runs of it) after --on-call-minutes of work at --on-call-rate dollars an
hour. docs/benchmark.md reports this command's output.

The defaults are the full benchmark (6 scenarios x 3 telemetry settings x 2 texts x
5 seeds x 6 policies, about a quarter of an hour on 2 cores); run it from the
repository's root, where sim/heldout is. Progress goes to standard error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchPolicies(cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.scenarios, "scenarios", defaultBenchScenarios, "comma-separated built-in scenario names or scenario files")
	f.StringVar(&o.telemetry, "telemetry", "all,failures,none", "comma-separated telemetry settings: all, failures, none")
	f.StringVar(&o.text, "text", "rendered,real", "comma-separated failure text sources: rendered, real")
	f.StringVar(&o.policies, "policies", strings.Join(comparedPolicies, ","), "comma-separated policies")
	f.IntVar(&o.seeds, "seeds", 5, "seeds per scenario and setting (2 to 100)")
	f.Uint64Var(&o.seed, "seed", 0, "first seed of every scenario (default: each scenario's own)")
	f.IntVar(&o.jobs, "jobs", 0, "runs per simulation (default: the scenario's)")
	f.StringVar(&o.models, "models", "", "models artifact for autofix (default: the embedded models)")
	f.BoolVar(&o.json, "json", false, "print the summaries and every seed's result as JSON instead")
	f.StringVar(&o.plotDir, "plot-dir", "", "write policies-SCENARIO.png here for the first telemetry setting and text (means and intervals)")
	addOnCallFlags(cmd, &o.onCall)
	return cmd
}

// benchSetting is one scenario in one telemetry setting with one text source.
type benchSetting struct {
	scenario *sim.Scenario
	// path is how --scenarios named it.
	path      string
	telemetry sim.Telemetry
	text      sim.Text
}

// benchPlan is the checked flags of bench policies.
type benchPlan struct {
	settings []benchSetting
	policies []string
}

// plan checks every flag before anything runs; errors name the flag.
func (o benchPoliciesOptions) plan() (benchPlan, error) {
	var p benchPlan
	if o.seeds < 2 || o.seeds > maxSeeds {
		return p, fmt.Errorf("--seeds %d: want 2 to %d (an interval needs two)", o.seeds, maxSeeds)
	}
	if o.jobs < 0 {
		return p, fmt.Errorf("--jobs %d: want a positive number (0: the scenario's)", o.jobs)
	}
	if err := checkOnCall(o.onCall); err != nil {
		return p, err
	}
	var err error
	if p.policies, err = parseList("--policies", o.policies, parsePolicy); err != nil {
		return p, err
	}
	telemetry, err := parseList("--telemetry", o.telemetry, sim.ParseTelemetry)
	if err != nil {
		return p, err
	}
	texts, err := parseList("--text", o.text, sim.ParseText)
	if err != nil {
		return p, err
	}
	paths, err := parseList("--scenarios", o.scenarios, func(name string) (string, error) {
		if name == "" {
			return "", fmt.Errorf("empty scenario name")
		}
		return name, nil
	})
	if err != nil {
		return p, err
	}
	var names []string
	for _, path := range paths {
		s, err := loadScenario(path)
		if err != nil {
			return p, fmt.Errorf("--scenarios: %s: %w", path, err)
		}
		if slices.Contains(names, s.Name) {
			return p, fmt.Errorf("--scenarios: %s: a second scenario named %q", path, s.Name)
		}
		names = append(names, s.Name)
		if o.seed != 0 {
			s.Seed = o.seed
		}
		for _, t := range telemetry {
			for _, x := range texts {
				c := *s
				c.Telemetry, c.Text = t, x
				p.settings = append(p.settings, benchSetting{scenario: &c, path: path, telemetry: t, text: x})
			}
		}
	}
	return p, nil
}

// benchOutcome is one setting's summaries and results.
type benchOutcome struct {
	setting benchSetting
	sums    []SeedSummary
	results []sim.Result
}

func benchPolicies(out, progress io.Writer, o benchPoliciesOptions) error {
	p, err := o.plan()
	if err != nil {
		return err
	}
	runner, err := newPolicyRunner(o.models)
	if err != nil {
		return err
	}
	outcomes := make([]benchOutcome, 0, len(p.settings))
	start := time.Now()
	for i, st := range p.settings {
		t0 := time.Now()
		results, err := runner.run(st.scenario, p.policies, seedsFrom(st.scenario.Seed, o.seeds), o.jobs)
		if err != nil {
			return fmt.Errorf("%s, telemetry %s, text %s: %w", st.path, st.telemetry, st.text, err)
		}
		outcomes = append(outcomes, benchOutcome{setting: st, sums: summarize(results, o.onCall), results: results})
		fmt.Fprintf(progress, "[%d/%d] %s, telemetry %s, text %s: %s\n", i+1, len(p.settings),
			st.scenario.Name, st.telemetry, st.text, time.Since(t0).Round(100*time.Millisecond))
	}
	fmt.Fprintf(progress, "done in %s\n", time.Since(start).Round(time.Second))
	if o.plotDir != "" {
		first := outcomes[0].setting
		for _, oc := range outcomes {
			if oc.setting.telemetry != first.telemetry || oc.setting.text != first.text {
				continue
			}
			path := filepath.Join(o.plotDir, "policies-"+fileSafe(oc.setting.scenario.Name)+".png")
			if err := plotSummaries(path, oc.setting.scenario.Name, oc.sums); err != nil {
				return err
			}
			fmt.Fprintf(progress, "wrote %s\n", path)
		}
	}
	if o.json {
		var sums []SeedSummary
		var results []pricedResult
		for _, oc := range outcomes {
			sums = append(sums, oc.sums...)
			for _, r := range oc.results {
				results = append(results, pricedResult{Result: r, Priced: r.Price(o.onCall)})
			}
		}
		return json.NewEncoder(out).Encode(map[string]any{"onCall": o.onCall, "summaries": sums, "results": results})
	}
	writeBenchMarkdown(out, o, outcomes)
	return nil
}

// writeBenchMarkdown prints the three tables bench policies' help describes.
func writeBenchMarkdown(w io.Writer, o benchPoliciesOptions, outcomes []benchOutcome) {
	first := outcomes[0].setting
	fmt.Fprintf(w, "Mean [95%% interval] over %d seeds per scenario and setting (Student's t, n-1 degrees of freedom; ends cut to 0 and, for rates, 1). %s.\n\n",
		o.seeds, onCallNote("Cost per fixed failure", o.onCall))

	// 1. Each policy's cost per fixed failure against the oracle's, per scenario.
	var heads []benchOutcome
	for _, oc := range outcomes {
		if oc.setting.telemetry == first.telemetry && oc.setting.text == first.text {
			heads = append(heads, oc)
		}
	}
	fmt.Fprintf(w, "### Cost per fixed failure against the oracle's (telemetry %s, %s text; fix rate in brackets)\n\n", first.telemetry, first.text)
	fmt.Fprint(w, "| policy |")
	for _, oc := range heads {
		fmt.Fprintf(w, " `%s` |", oc.setting.scenario.Name)
	}
	fmt.Fprint(w, "\n|---|"+strings.Repeat("---|", len(heads))+"\n")
	for i, s := range heads[0].sums {
		fmt.Fprintf(w, "| %s |", bold(s.Policy, s.Policy))
		for _, oc := range heads {
			v := oc.sums[i]
			fmt.Fprintf(w, " %s (%s) |", bold(v.Policy, v.VsOracle.show(times)), fixed(3)(v.FixRate.Mean))
		}
		fmt.Fprintln(w)
	}

	// 2. autofix in every setting.
	fmt.Fprint(w, "\n### autofix in every setting\n\n")
	fmt.Fprintln(w, "| scenario | telemetry | text | fix rate | first-retry | cost per fixed failure $ | vs oracle | wasted $ | false retries |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, oc := range outcomes {
		for _, s := range oc.sums {
			if s.Policy != "autofix" {
				continue
			}
			fmt.Fprintf(w, "| `%s` | %s | %s | %s | %s | %s | %s | %s | %s |\n", oc.setting.scenario.Name, s.Telemetry, s.Text,
				s.FixRate.show(fixed(3)), s.FirstRetryRate.show(fixed(3)), s.CostPerFix.show(dollars(2)),
				s.VsOracle.show(times), s.WastedCost.show(dollars(0)), s.FalseRetries.show(fixed(0)))
		}
	}

	// 3. Every policy in every setting.
	fmt.Fprint(w, "\n### Every policy in every setting\n")
	for _, oc := range outcomes {
		st := oc.setting
		s0 := oc.sums[0]
		jobs := st.scenario.Jobs
		if o.jobs > 0 {
			jobs = o.jobs
		}
		fmt.Fprintf(w, "\n#### `%s`, telemetry %s, %s text\n\n", st.scenario.Name, st.telemetry, st.text)
		fmt.Fprintf(w, "%s; seeds %d to %d, %s runs each.\n\n", st.path, s0.Seeds[0], s0.Seeds[len(s0.Seeds)-1], dollars(0)(float64(jobs)))
		fmt.Fprintln(w, "| policy | fix rate | first-retry | cost per fixed failure $ | vs oracle | retry spend $ | wasted $ | by hand $ | false retries | retry spend vs oracle |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
		for _, s := range oc.sums {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", bold(s.Policy, s.Policy),
				s.FixRate.show(fixed(3)), s.FirstRetryRate.show(fixed(3)), s.CostPerFix.show(dollars(2)),
				bold(s.Policy, s.VsOracle.show(times)), s.Cost.show(dollars(0)), s.WastedCost.show(dollars(0)),
				s.ManualCost.show(dollars(0)), s.FalseRetries.show(fixed(0)), s.CostVsOracle.show(times))
		}
	}
}

// bold marks autofix's cells.
func bold(policy, cell string) string {
	if policy == "autofix" {
		return "**" + cell + "**"
	}
	return cell
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/recommender"
)

type recommendOptions struct {
	rulesDir string
	models   string
	history  string
	scenario string
	quotas   string
	target   float64
	weights  []float64
	runtime  bool
}

func newRecommendCmd() *cobra.Command {
	var o recommendOptions
	cmd := &cobra.Command{
		Use:   "recommend [FILE|-]",
		Short: "Recommend how to retry FailureEvents (JSON lines) and print one Recommendation per line",
		Long: `Recommend reads FailureEvents as JSON lines from FILE, standard input ("-"), or the
bundled sample events when no FILE is given, and writes one Recommendation per line:
the classification with its evidence, the options considered (best first) with their
probability of success, expected cost and Pareto flag, the chosen option and a
plain-language explanation. Failures no retry can fix get no options.

--history reads the recorded outcomes of earlier runs (JSON lines of outcomes, each
with its "template"), the strongest signal for a recurring job. Prices and the
largest node come from a scenario (--scenario, the built-in default unless given).
--quotas reads what one retry may take in each namespace, as a JSON object:
{"team-a": {"cpu": "32", "memory": "256Gi", "gpu": 4}}.
A line that cannot be decoded yields {"line":N,"error":"..."} and the exit status 1.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadScenario(o.scenario)
			if err != nil {
				return err
			}
			c, err := loadClassifier(o.rulesDir, config.Default().Classifier.MinConfidence)
			if err != nil {
				return err
			}
			m, err := loadModels(o.models)
			if err != nil {
				return err
			}
			history := map[string][]failure.Outcome{}
			if o.history != "" {
				if history, err = readHistory(o.history); err != nil {
					return err
				}
			}
			if !(o.target > 0 && o.target < 1) {
				return fmt.Errorf("--target %v: want a probability between 0 and 1", o.target)
			}
			if n := len(o.weights); n > 0 && (n != 2 && !o.runtime || n != 3 && o.runtime) {
				return fmt.Errorf("--weights: want one weight per objective (P(failure), expected cost%s), got %d",
					map[bool]string{true: ", runtime"}[o.runtime], n)
			}
			var quotas map[string]failure.Resources
			if o.quotas != "" {
				if quotas, err = readQuotas(o.quotas); err != nil {
					return err
				}
			}
			in, name, closeIn, err := openInput(cmd.InOrStdin(), args)
			if err != nil {
				return err
			}
			defer closeIn()
			bad, err := recommendStream(recommenderFor(s, c, m, func(opts *recommender.Options) {
				opts.Quotas, opts.MinPSuccess, opts.Weights, opts.Runtime = quotas, o.target, o.weights, o.runtime
			}), history, in, cmd.OutOrStdout())
			if err != nil {
				return fmt.Errorf("read %s: %w", name, err)
			}
			if bad > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "autofix: %d line(s) of %s could not be read\n", bad, name)
				return exitError(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.rulesDir, "rules", "", "directory of rule files to use instead of the embedded defaults")
	f.StringVar(&o.models, "models", "", "models artifact to use (default: the embedded models)")
	f.StringVar(&o.history, "history", "", "recorded outcomes of earlier runs (JSON lines)")
	f.StringVar(&o.scenario, "scenario", "default", "scenario whose prices and cluster limits apply")
	f.StringVar(&o.quotas, "quotas", "", "JSON file of the resources one retry may take, by namespace")
	f.Float64Var(&o.target, "target", 0.95, "choose the cheapest option whose chance of fixing what failed reaches this")
	f.Float64SliceVar(&o.weights, "weights", nil, "choose by these weights of the objectives instead of --target")
	f.BoolVar(&o.runtime, "runtime-objective", false, "add the runtime of the retry as a third objective")
	return cmd
}

func recommendStream(r *recommender.Recommender, history map[string][]failure.Outcome, in io.Reader, out io.Writer) (int, error) {
	return eachEvent(in, out, func(ev *failure.Event) any { return r.Recommend(ev, history[ev.Job.Template]) })
}

// readHistory reads outcomes (JSON lines) and groups them by template, in file order.
func readHistory(path string) (map[string][]failure.Outcome, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	out := map[string][]failure.Outcome{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, failure.MaxPayload)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var o failure.Outcome
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if o.Template == "" {
			return nil, fmt.Errorf("%s:%d: template: required", path, n)
		}
		out[o.Template] = append(out[o.Template], o)
	}
	return out, sc.Err()
}

// readQuotas reads a JSON object of resources by namespace.
func readQuotas(path string) (map[string]failure.Resources, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: want an object of resources by namespace: %w", path, err)
	}
	out := make(map[string]failure.Resources, len(raw))
	for ns, r := range raw {
		var res failure.Resources
		if err := json.Unmarshal(r, &res); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, ns, err)
		}
		out[ns] = res
	}
	return out, nil
}

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/sim"
)

type trainOptions struct {
	scenario  string
	jobs      int
	templates int
	seed      uint64
	outcomes  string
	out       string
	dump      string
	telemetry string
}

// loadScenario is the scenario the simulated examples come from, with the seed and
// template count the options set.
func (o *trainOptions) loadScenario() (*sim.Scenario, error) {
	s, err := loadScenario(o.scenario)
	if err != nil {
		return s, err
	}
	if o.seed != 0 {
		s.Seed = o.seed
	}
	if o.templates > 0 {
		s.Templates = o.templates
	}
	return s, nil
}

func newTrainCmd() *cobra.Command {
	var (
		o  trainOptions
		lo ledgerTrainOptions
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train the retry-success and runtime models and print their evaluation",
		Long: `Train fits the retry-success and runtime models to examples of retries and their
outcomes: from the simulator (a scenario, built in or a file; retries explore random
configurations around each failure) or from a file of recorded examples (--examples,
JSON lines of models.Example). It prints the evaluation on held-out jobs — AUC, Brier
score and reliability tables, runtime error — and writes the versioned artifact to --out.

The simulator's examples come from each telemetry setting of --telemetry in turn
(default all, failures and none: a cluster with metrics, one with only what the
watcher sees, one with nothing), --jobs runs each, the first with the scenario's seed
(or --seed) and each next with the seed after: the models learn to use peaks where a
cluster measures them, and where it does not, they are fitted to what is left to
them (a failure no successful run bounds) while the bounds the limits tried set give
the rest, and the evaluation scores both. The history of each example labels its
failures with their classification, as the ledger does.

--from-ledger trains instead on what happened in production: every remediation of
serve's ledger (--config, --data-dir, --db) whose attempt succeeded or failed is a
retry, with the failure as recorded, its template's history as it was when the
failure was received (nothing recorded later), the option the attempt ran and its
outcome as autofix's watcher measured it. What an event claimed of usage and cost is
never used. The retries are split by time: the earliest (1 - --test-share) train,
the latest are evaluated on (AUC, Brier, log-loss and reliability tables), and the
report says how many there were and when they were received. --with-sim N adds the
retries of N simulated runs per --telemetry setting (--scenario, --seed) to the
training part only. A model too few retries fit (none of GPUs on a cluster without
them) is kept from --models (default: the embedded models), and the report names it.
--since and --until choose the window, --max-examples keeps the latest N, and
--max-per-namespace at most the latest N of any one namespace: a tenant who fails its
own Jobs on purpose, many times, decides those retries' outcomes and must not be all
the models learn from.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lo.check(cmd, &o); err != nil {
				return err
			}
			if lo.on {
				return trainFromLedger(cmd, &o, &lo)
			}
			s, err := o.loadScenario()
			if err != nil {
				return err
			}
			var examples []models.Example
			telemetry := "examples"
			if o.outcomes != "" {
				examples, err = readExamples(o.outcomes)
			} else {
				examples, telemetry, err = simulateTelemetries(s, o.jobs, o.telemetry)
			}
			if err != nil {
				return err
			}
			if o.dump != "" {
				if err := writeExamples(o.dump, examples); err != nil {
					return err
				}
			}
			name := fmt.Sprintf("%s-seed%d-%s-%dex", s.Name, s.Seed, telemetry, len(examples))
			m, err := models.Train(examples, &s.Catalogue, models.TrainOptions{Name: name})
			if err != nil {
				return err
			}
			m.Evaluation.Write(cmd.OutOrStdout())
			if o.out != "" {
				return writeModels(cmd.OutOrStdout(), m, o.out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.scenario, "scenario", "default", "built-in scenario name or scenario file")
	f.IntVar(&o.jobs, "jobs", 0, "runs to simulate (default: the scenario's)")
	f.IntVar(&o.templates, "templates", 0, "recurring jobs the runs belong to (default: the scenario's)")
	f.Uint64Var(&o.seed, "seed", 0, "override the scenario's seed")
	f.StringVar(&o.outcomes, "examples", "", "train from a file of recorded examples (JSON lines) instead of the simulator")
	f.StringVar(&o.out, "out", "", "write the trained models to this file")
	f.StringVar(&o.dump, "dump-examples", "", "also write the training examples to this file (JSON lines)")
	f.StringVar(&o.telemetry, "telemetry", "all,failures,none", "telemetry settings to simulate examples with, comma-separated (all, failures, none)")
	lo.register(cmd)
	return cmd
}

// writeModels writes the models' artifact to path and says so on w.
func writeModels(w io.Writer, m *models.Models, path string) error {
	data, err := m.Save()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil { //nolint:gosec // a model artifact is not secret
		return err
	}
	fmt.Fprintf(w, "\nwrote %s (%s)\n", path, m.Name)
	return nil
}

// loadScenario reads a built-in scenario by name, or a scenario file.
func loadScenario(nameOrPath string) (*sim.Scenario, error) {
	if _, err := os.Stat(nameOrPath); err == nil {
		return sim.LoadScenario(nameOrPath)
	}
	return sim.Builtin(nameOrPath)
}

// simulateTelemetries simulates examples with each telemetry setting of the
// comma-separated list, the first with the scenario's seed and each next with the
// seed after; it returns them with the settings joined by "+", for the models' name.
func simulateTelemetries(s *sim.Scenario, jobs int, list string) ([]models.Example, string, error) {
	settings, err := parseList("--telemetry", list, sim.ParseTelemetry)
	if err != nil {
		return nil, "", err
	}
	var all []models.Example
	names := make([]string, len(settings))
	for i, t := range settings {
		c := *s
		c.Seed, c.Telemetry = s.Seed+uint64(i), t
		ex, err := simulateExamples(&c, jobs)
		if err != nil {
			return nil, "", err
		}
		all = append(all, ex...)
		names[i] = string(t)
	}
	return all, strings.Join(names, "+"), nil
}

// simulateExamples runs the scenario with the exploring policy and classifies each
// retry's failure as the ledger would.
func simulateExamples(s *sim.Scenario, jobs int) ([]models.Example, error) {
	c, err := loadClassifier("", config.Default().Classifier.MinConfidence)
	if err != nil {
		return nil, err
	}
	var examples []models.Example
	var cerr error
	p := &explorer{c: c, s: s, rng: rand.New(rand.NewPCG(s.Seed, 7))}
	classify := func(ev *failure.Event) failure.Category { return c.Classify(ev).Category }
	_, err = sim.Run(s, p, sim.Options{Jobs: jobs, Classify: classify, Record: func(r sim.Retry) {
		ex := models.Example{Event: *r.Event, History: r.History, Option: r.Option, Outcome: r.Outcome}
		ex.Category = c.Classify(r.Event).Category
		if r.Failure != nil {
			ex.Result = c.Classify(r.Failure).Category
		}
		examples = append(examples, ex)
	}})
	if err == nil {
		err = cerr
	}
	return examples, err
}

var _ = (*classifier.Classifier)(nil)

func readExamples(path string) ([]models.Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []models.Example
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for n := 1; sc.Scan(); n++ {
		var ex models.Example
		if err := json.Unmarshal(sc.Bytes(), &ex); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if !ex.Category.Valid() {
			return nil, fmt.Errorf("%s:%d: category: %w", path, n, errors.New("not a category of the taxonomy"))
		}
		out = append(out, ex)
	}
	return out, sc.Err()
}

func writeExamples(path string, examples []models.Example) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for i := range examples {
		if err := enc.Encode(&examples[i]); err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

var _ failure.Category

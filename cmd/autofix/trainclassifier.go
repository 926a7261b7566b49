package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/classifier"
)

type trainClassifierOptions struct {
	out          string
	knowledgeDir string
	rulesDir     string
	opts         classifier.TrainOptions
	cv           bool
	verbose      bool
	authority    float64
	check        string
}

func newTrainClassifierCmd() *cobra.Command {
	var o trainClassifierOptions
	cmd := &cobra.Command{
		Use:   "train-classifier FILE...",
		Short: "Train the learned failure classifier on labelled failure messages",
		Long: `Train-classifier trains the learned classifier — a multinomial logistic regression
over hashed word and character n-grams of a failure's message and error lines and its
structured signals (reason, exit code, exception type, knowledge-table hits) — on
labelled files (the format of classify --eval). Cross-validation folds, grouped by
source thread, calibrate its probabilities and choose its retry threshold; the report
shows the held-out figures, the reliability tables and the false-retry / missed-retry
curve. With --out it writes the versioned artifact.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.check != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.MinimumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.check != "" {
				return checkModel(cmd.OutOrStdout(), o.check)
			}
			if o.cv {
				items, err := readLabelledFiles(args)
				if err != nil {
					return err
				}
				base, err := classifier.LoadDefault(classifier.Sources{RulesDir: o.rulesDir, KnowledgeDir: o.knowledgeDir, ModelFile: classifier.NoModel},
					classifier.Options{Authority: o.authority})
				if err != nil {
					return err
				}
				rep, err := classifier.CrossValidate(base, items, o.opts)
				if err != nil {
					return err
				}
				return rep.Write(cmd.OutOrStdout(), o.verbose)
			}
			sources := make([]string, len(args))
			for i, path := range args {
				sources[i] = filepath.ToSlash(filepath.Clean(path))
			}
			m, rep, err := trainFrom(sources, o.rulesDir, o.knowledgeDir, o.opts)
			if err != nil {
				return err
			}
			if err := writeTrainReport(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
			if o.out == "" {
				return nil
			}
			data, err := json.Marshal(m)
			if err != nil {
				return err
			}
			// Whole or not at all: a cut-short artifact would stop every command
			// that loads it.
			if err := writeWhole(o.out, func(w io.Writer) error {
				_, err := w.Write(append(data, '\n'))
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trained on %d labelled messages; wrote %s\n", m.Info().Examples, o.out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "write the trained classifier to this file")
	f.StringVar(&o.check, "check", "", "retrain the artifact FILE from the files and options it records and fail unless the result is the same")
	f.StringVar(&o.rulesDir, "rules", "", "directory of rule files to use instead of the embedded rules")
	f.StringVar(&o.knowledgeDir, "knowledge", "", "directory of knowledge tables layered over the embedded ones")
	f.BoolVar(&o.cv, "cv", false, "instead of training, cross-validate the rules with a model trained on the other folds")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "with --cv, list every failure the held-out classifier got wrong")
	f.Float64Var(&o.authority, "authority", 0, "with --cv, the rules' confidence at which they decide without the model (default 0.95)")
	f.BoolVar(&o.opts.RuleFeatures, "rule-features", false, "make the rules that matched features of the model")
	f.Float64Var(&o.opts.MinConfidence, "min-confidence", 0, "calibrated probability below which the model abstains (default 0.3)")
	f.Float64Var(&o.opts.ClassBalance, "class-balance", 0, "weigh rare categories up: 0 none, 1 every category alike")
	f.Float64Var(&o.opts.AmbiguousWeight, "ambiguous-weight", 0, "weight in (0, 1] of a line its two labellers disagreed on; 0 counts it as any other")
	f.Uint32Var(&o.opts.Buckets, "buckets", 0, "size of the feature hash space, a power of two (default 262144)")
	f.IntVar(&o.opts.Folds, "folds", 0, "cross-validation folds (default 5)")
	f.IntVar(&o.opts.MaxIterations, "max-iterations", 0, "L-BFGS iterations per fit (default 300)")
	f.Float64Var(&o.opts.L2, "l2", 0, "L2 penalty on the weights (default 1e-2)")
	f.IntVar(&o.opts.MinDocFreq, "min-doc-freq", 0, "failures a feature must occur in to get a weight (default 2)")
	f.Float64Var(&o.opts.TargetFalseRetry, "target-false-retry", 0, "held-out false-retry rate the retry threshold may reach (default 0.05)")
	return cmd
}

// readLabelledFiles reads labelled events from each file in turn.
func readLabelledFiles(paths []string) ([]classifier.Labelled, error) {
	var out []classifier.Labelled
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		items, err := classifier.ReadLabelled(f)
		_ = f.Close() // read-only
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, items...)
	}
	return out, nil
}

// writeTrainReport prints the cross-validated figures, the reliability tables and the
// retry trade-off curve.
func writeTrainReport(w io.Writer, rep *classifier.TrainReport) error {
	fmt.Fprintln(w, rep.String())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\nconfidence\tcount\tmean p\tright\t\tP(retry)\tcount\tmean p\tretryable\t")
	for i := range rep.Reliability {
		c, r := rep.Reliability[i], rep.RetryReliability[i]
		fmt.Fprintf(tw, "%.1f-%.1f\t%d\t%.3f\t%.3f\t\t%.1f-%.1f\t%d\t%.3f\t%.3f\t\n",
			c.Low, c.High, c.Count, c.MeanPredict, c.Observed, r.Low, r.High, r.Count, r.MeanPredict, r.Observed)
	}
	fmt.Fprintln(tw, "\nretry threshold\tfalse retries\tmissed retries\t")
	for _, p := range rep.RetryCurve {
		mark := ""
		if p.Threshold == rep.RetryThreshold {
			mark = " <- chosen"
		}
		fmt.Fprintf(tw, "%.2f\t%.3f\t%.3f\t%s\n", p.Threshold, p.FalseRetryRate, p.MissedRate, mark)
	}
	return tw.Flush()
}

// trainFrom trains a model on the labelled files sources with the rules and knowledge
// of rulesDir and knowledgeDir ("": the embedded ones), recording all three in it.
func trainFrom(sources []string, rulesDir, knowledgeDir string, opts classifier.TrainOptions) (*classifier.Model, *classifier.TrainReport, error) {
	items, err := readLabelledFiles(sources)
	if err != nil {
		return nil, nil, err
	}
	base, err := classifier.LoadDefault(classifier.Sources{RulesDir: rulesDir, KnowledgeDir: knowledgeDir, ModelFile: classifier.NoModel},
		classifier.Options{})
	if err != nil {
		return nil, nil, err
	}
	m, rep, err := classifier.Train(base, items, opts)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range sources {
		m.AddSource(s)
	}
	m.SetTrainedWith(rulesDir, knowledgeDir)
	return m, rep, nil
}

// checkModel retrains the artifact at path from the labelled files and options it
// records, and fails unless the result is the artifact: byte for byte, or, trained
// on a machine that rounds otherwise, to within checkTolerance.
func checkModel(w io.Writer, path string) error {
	data, err := os.ReadFile(path) //nolint:gosec // a path the user names
	if err != nil {
		return err
	}
	m, err := classifier.ReadModel(bytes.NewReader(data), path)
	if err != nil {
		return err
	}
	info := m.Info()
	if len(info.Sources) == 0 || info.Options == nil {
		return fmt.Errorf("%s: records no training files or options to retrain from", path)
	}
	again, _, err := trainFrom(info.Sources, info.RulesDir, info.KnowledgeDir, *info.Options)
	if err != nil {
		return err
	}
	out, err := json.Marshal(again)
	if err != nil {
		return err
	}
	if bytes.Equal(append(out, '\n'), data) {
		fmt.Fprintf(w, "%s is what %d labelled messages train\n", path, info.Examples)
		return nil
	}
	// Another CPU architecture rounds differently (arm64 fuses multiply-adds, gonum
	// has other kernels there): the same training differs in the last digits.
	where, largest, err := jsonDiff(out, data, checkTolerance, ".weights")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if where != "" {
		return fmt.Errorf("%s is stale (%s differs): retrain it with: autofix %s", path, where, strings.Join(retrainArgs(path, info), " "))
	}
	fmt.Fprintf(w, "%s is what %d labelled messages train, to within %.1g (not byte for byte: this machine rounds otherwise than the one that wrote it)\n",
		path, info.Examples, largest)
	return nil
}

// checkTolerance is how far, relative, --check lets a retrained number be from the
// artifact's. Training on arm64 (under qemu) what amd64 wrote differs by at most
// 1.5e-8; one labelled message more or less moves weights by far more than this.
const checkTolerance = 1e-6

// retrainArgs is the train-classifier command line that makes the artifact at path
// again from what it records: its files, options, rules and knowledge tables.
func retrainArgs(path string, info classifier.ModelInfo) []string {
	o := info.Options
	args := []string{"train-classifier"}
	if o.RuleFeatures {
		args = append(args, "--rule-features")
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	args = append(args, "--buckets", strconv.FormatUint(uint64(o.Buckets), 10), "--min-doc-freq", strconv.Itoa(o.MinDocFreq),
		"--l2", f(o.L2), "--folds", strconv.Itoa(o.Folds), "--max-iterations", strconv.Itoa(o.MaxIterations),
		"--target-false-retry", f(o.TargetFalseRetry), "--min-confidence", f(o.MinConfidence), "--class-balance", f(o.ClassBalance))
	if o.AmbiguousWeight > 0 {
		args = append(args, "--ambiguous-weight", f(o.AmbiguousWeight))
	}
	if info.RulesDir != "" {
		args = append(args, "--rules", info.RulesDir)
	}
	if info.KnowledgeDir != "" {
		args = append(args, "--knowledge", info.KnowledgeDir)
	}
	args = append(args, "--out", path)
	return append(args, info.Sources...)
}

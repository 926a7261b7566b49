package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/examples"
	"github.com/autofix/autofix/failure"
)

type classifyOptions struct {
	src           classifier.Sources
	evalFile      string
	verbose       bool
	minConfidence float64
	authority     float64
}

func newClassifyCmd() *cobra.Command {
	var o classifyOptions
	cmd := &cobra.Command{
		Use:   "classify [FILE|-]",
		Short: "Classify FailureEvents (JSON lines) and print one result per line",
		Long: `Classify reads FailureEvents as JSON lines from FILE, or standard input for "-",
or the bundled sample events when no FILE is given, and writes one JSON line per
event: {"id","category","retryable","action","confidence","rules","evidence"}.
A line that cannot be decoded yields {"line":N,"error":"..."} and the lines after
it are still classified; the exit status is then 1.

With --eval FILE it reads a labelled file instead (each line an event with
"expected": {"category","retryable"}) and prints per-category precision and
recall, category accuracy, retry-decision accuracy and the false-retry count.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !(o.minConfidence > 0 && o.minConfidence <= 1) {
				return fmt.Errorf("--min-confidence %v: want a number in (0, 1]", o.minConfidence)
			}
			if !(o.authority > 0 && o.authority <= 1) {
				return fmt.Errorf("--authority %v: want a number in (0, 1]", o.authority)
			}
			c, err := classifier.LoadDefault(o.src, classifier.Options{MinConfidence: o.minConfidence, Authority: o.authority})
			if err != nil {
				return err
			}
			if o.evalFile != "" {
				if len(args) > 0 {
					return errors.New("--eval takes its file as the flag's value, not as an argument")
				}
				return runEval(cmd.OutOrStdout(), c, o.evalFile, o.verbose)
			}
			in, name, closeIn, err := openInput(cmd.InOrStdin(), args)
			if err != nil {
				return err
			}
			defer closeIn()
			bad, err := classifyStream(c, in, cmd.OutOrStdout())
			if err != nil {
				return fmt.Errorf("read %s: %w", name, err)
			}
			if bad > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "autofix: %d line(s) of %s could not be classified\n", bad, name)
				return exitError(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.src.RulesDir, "rules", "", "directory of rule files (*.yaml) to use instead of the embedded defaults")
	f.StringVar(&o.src.KnowledgeDir, "knowledge", "", "directory of knowledge tables (*.yaml) layered over the embedded ones (classifier.knowledge)")
	f.StringVar(&o.src.ModelFile, "model", "", `learned classifier artifact to use instead of the embedded one, "none" for rules and knowledge alone (classifier.model)`)
	f.Float64Var(&o.authority, "authority", config.Default().Classifier.Authority, "confidence at which the rules decide without the model (classifier.authority)")
	f.StringVar(&o.evalFile, "eval", "", "evaluate the rules on a labelled file and print the scores")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "with --eval, list every event classified wrongly")
	f.Float64Var(&o.minConfidence, "min-confidence", config.Default().Classifier.MinConfidence, "confidence below which a failure is classified unknown (classifier.minConfidence)")
	return cmd
}

// loadClassifier builds the classifier of the default configuration, with the rules
// of dir instead of the embedded ones when dir is not "".
func loadClassifier(dir string, minConfidence float64) (*classifier.Classifier, error) {
	return classifier.LoadDefault(classifier.Sources{RulesDir: dir},
		classifier.Options{MinConfidence: minConfidence, Authority: config.Default().Classifier.Authority})
}

// openInput opens the named file, standard input for "-", or the bundled samples.
func openInput(stdin io.Reader, args []string) (io.Reader, string, func(), error) {
	switch {
	case len(args) == 0:
		return bytes.NewReader(examples.Events), "the bundled sample events", func() {}, nil
	case args[0] == "-":
		return stdin, "standard input", func() {}, nil
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, "", nil, err
	}
	return f, args[0], func() { _ = f.Close() }, nil
}

// result is one output line of classify.
type result struct {
	ID string `json:"id"`
	failure.Classification
}

type lineError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// classifyStream classifies each line of in and writes a result or an error line for
// it to out. It returns how many lines failed.
func classifyStream(c *classifier.Classifier, in io.Reader, out io.Writer) (int, error) {
	return eachEvent(in, out, func(ev *failure.Event) any {
		return result{ID: ev.ID, Classification: c.Classify(ev)}
	})
}

// eachEvent decodes FailureEvents (JSON lines) from in and writes, as JSON lines, what
// do makes of each, or a lineError for a line that cannot be decoded. It returns how
// many lines could not be.
func eachEvent(in io.Reader, out io.Writer, do func(*failure.Event) any) (int, error) {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	lr := newLineReader(in, failure.MaxPayload)
	bad := 0
	for {
		line, n, err := lr.next()
		var res any
		switch {
		case errors.Is(err, io.EOF):
			return bad, nil
		case errors.Is(err, errLineTooLong):
			res = lineError{Line: n, Error: fmt.Sprintf("payload: over the %d-byte limit", failure.MaxPayload)}
		case err != nil:
			return bad, err
		case len(bytes.TrimSpace(line)) == 0:
			continue
		default:
			ev, derr := failure.Decode(line)
			if derr != nil {
				res = lineError{Line: n, Error: derr.Error()}
			} else {
				res = do(&ev)
			}
		}
		if _, ok := res.(lineError); ok {
			bad++
		}
		if err := enc.Encode(res); err != nil {
			return bad, err
		}
	}
}

func runEval(out io.Writer, c *classifier.Classifier, file string, verbose bool) error {
	items, err := readLabelledFiles([]string{file})
	if err != nil {
		return err
	}
	return classifier.Evaluate(c, items).Write(out, verbose)
}

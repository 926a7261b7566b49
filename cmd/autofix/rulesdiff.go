package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/rulesdiff"
	"github.com/autofix/autofix/service"
)

// maxDiffEvents bounds --last: the report keeps every change in memory.
const maxDiffEvents = 100_000

// Exit statuses of rules diff, as diff(1)'s: 1 when the changes are over a limit,
// 2 when the diff could not be made.
const (
	diffOverLimit = exitError(1)
	diffTrouble   = exitError(2)
)

type rulesDiffOptions struct {
	cf           configFlags
	rules        string
	knowledge    string
	model        string
	db           string
	last         int
	asJSON       bool
	failOnChange bool
	// The limits; negative: none.
	maxCategory, maxRetry, maxNewlyRetried int
}

func newRulesDiffCmd() *cobra.Command {
	var o rulesDiffOptions
	cmd := &cobra.Command{
		Use:   "diff --rules DIR | --knowledge DIR | --model FILE|none",
		Short: "Replay the ledger's last failure events through a candidate classifier and show what would change",
		Long: `Diff replays the newest failure events the ledger recorded (--last N, default 1000;
messages rejected without an event are skipped) through the classifier serve builds from its
configuration (the embedded rules, classifier.knowledge over the embedded knowledge
tables, classifier.model) and through a candidate: the same with the rules of
--rules DIR, the knowledge tables of --knowledge DIR (layered over the embedded ones,
in place of classifier.knowledge) and/or the model of --model FILE ("none": rules and
knowledge alone). Both classify as serve does, with classifier.minConfidence and
classifier.authority and modelMinConfidence. Candidate rules run without a model
trained on other rules' matches (the embedded model reads only the text and
knowledge, so it stays).

It prints each event whose category, retry decision or action changes (a change of
confidence alone is not one), and a summary: events replayed, category changes,
retry-decision changes (newly retried, no longer retried), action changes, and the
category-to-category matrix. --json prints the same as one JSON document:
{"summary", "matrix", "changes", "ruleErrors"}, as POST /v1/rules:diff returns it.

The ledger is serve's (--config, $AUTOFIX_CONFIG, --data-dir), or --db: a PostgreSQL
URL, or a SQLite file such as a copy of serve's ledger.db. Nothing is written to it
(opening it applies the ledger's migrations, as every command does).

For CI: --fail-on-change exits 1 on any change; --max-category-changes,
--max-retry-changes and --max-newly-retried N exit 1 when a count is over N. The
exit status is 2 when the diff cannot be made (a candidate that does not load, no
ledger), and 0 otherwise (with a warning when the ledger holds no event to replay).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(cmd, fmt.Errorf("rules diff takes no arguments (the candidate is --rules, --knowledge or --model), got %q", args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := o.replay(cmd)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "autofix:", err)
				return diffTrouble
			}
			out := cmd.OutOrStdout()
			if o.asJSON {
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				err = enc.Encode(rep)
			} else {
				err = writeDiff(out, &rep)
			}
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "autofix:", err)
				return diffTrouble
			}
			if rep.Summary.Replayed == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "autofix: rules diff: the ledger holds no failure event to replay: nothing was checked")
			}
			if over := o.overLimits(&rep.Summary); len(over) > 0 {
				for _, s := range over {
					fmt.Fprintln(cmd.ErrOrStderr(), "autofix: rules diff:", s)
				}
				return diffOverLimit
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(usageError)
	o.cf.register(cmd, "data-dir")
	f := cmd.Flags()
	f.StringVar(&o.rules, "rules", "", "candidate: directory of rule files (*.yaml) in place of the embedded rules")
	f.StringVar(&o.knowledge, "knowledge", "", "candidate: directory of knowledge tables (*.yaml) layered over the embedded ones, in place of classifier.knowledge")
	f.StringVar(&o.model, "model", "", `candidate: learned classifier artifact in place of classifier.model, "none" for rules and knowledge alone`)
	f.StringVar(&o.db, "db", "", "the ledger: a PostgreSQL URL, or a SQLite file (default: the configuration's)")
	f.IntVar(&o.last, "last", rulesdiff.DefaultLast, fmt.Sprintf("replay the `N` newest failure events (at most %d)", maxDiffEvents))
	f.BoolVar(&o.asJSON, "json", false, "print the report as one JSON document")
	f.BoolVar(&o.failOnChange, "fail-on-change", false, "exit 1 if any event's category, retry decision or action changes")
	f.IntVar(&o.maxCategory, "max-category-changes", -1, "exit 1 if more than `N` events change category (negative: no limit)")
	f.IntVar(&o.maxRetry, "max-retry-changes", -1, "exit 1 if more than `N` retry decisions change, either way (negative: no limit)")
	f.IntVar(&o.maxNewlyRetried, "max-newly-retried", -1, "exit 1 if more than `N` events not retried now would be (negative: no limit)")
	return cmd
}

// usageError reports a mistake in the command line and ends with diff's status for
// trouble.
func usageError(cmd *cobra.Command, err error) error {
	fmt.Fprintln(cmd.ErrOrStderr(), "autofix:", err)
	return diffTrouble
}

// replay builds both classifiers, opens the ledger and replays its last events.
func (o *rulesDiffOptions) replay(cmd *cobra.Command) (rulesdiff.Report, error) {
	if o.last < 1 || o.last > maxDiffEvents {
		return rulesdiff.Report{}, fmt.Errorf("--last %d: want 1 to %d", o.last, maxDiffEvents)
	}
	fl := cmd.Flags()
	if !fl.Changed("rules") && !fl.Changed("knowledge") && !fl.Changed("model") {
		return rulesdiff.Report{}, errors.New("no candidate: give --rules DIR, --knowledge DIR or --model FILE|none")
	}
	cfg, err := o.cf.load(cmd)
	if err != nil {
		return rulesdiff.Report{}, err
	}
	cur, err := service.NewClassifier(&cfg)
	if err != nil {
		return rulesdiff.Report{}, fmt.Errorf("the classifier in use: %w", err)
	}
	src := classifier.Sources{KnowledgeDir: cfg.Classifier.Knowledge, ModelFile: cfg.Classifier.Model}
	if fl.Changed("rules") {
		src.RulesDir = o.rules
	}
	if fl.Changed("knowledge") {
		src.KnowledgeDir = o.knowledge
	}
	if fl.Changed("model") {
		src.ModelFile = o.model
	}
	cand, err := classifier.LoadDefault(src, classifier.Options{MinConfidence: cfg.Classifier.MinConfidence, ModelMinConfidence: cfg.Classifier.ModelMinConfidence, Authority: cfg.Classifier.Authority})
	if err != nil {
		return rulesdiff.Report{}, fmt.Errorf("the candidate's %w", err)
	}
	current, candidate := cur, cand
	dsn := cfg.LedgerDSN()
	if fl.Changed("db") {
		dsn = o.db
	}
	if !ledger.IsPostgres(dsn) {
		// An existing file only: a typo must not create an empty ledger to replay.
		if _, err := os.Stat(strings.TrimPrefix(dsn, "sqlite:")); err != nil {
			return rulesdiff.Report{}, fmt.Errorf("no ledger at %s: %w", dsn, err)
		}
	}
	store, err := ledger.Open(cmd.Context(), dsn)
	if err != nil {
		return rulesdiff.Report{}, err
	}
	defer func() { _ = store.Close() }()
	return rulesdiff.Replay(cmd.Context(), store, o.last, current, candidate)
}

// overLimits says which of the limits the summary is over.
func (o *rulesDiffOptions) overLimits(s *rulesdiff.Summary) []string {
	var over []string
	if o.failOnChange && s.Changed > 0 {
		over = append(over, fmt.Sprintf("changed events: %d (--fail-on-change)", s.Changed))
	}
	for _, l := range []struct {
		flag       string
		max, count int
		what       string
	}{
		{"--max-category-changes", o.maxCategory, s.CategoryChanges, "category changes"},
		{"--max-retry-changes", o.maxRetry, s.RetryChanges, "retry-decision changes"},
		{"--max-newly-retried", o.maxNewlyRetried, s.NewlyRetried, "events newly retried"},
	} {
		if l.max >= 0 && l.count > l.max {
			over = append(over, fmt.Sprintf("%s: %d, over %s %d", l.what, l.count, l.flag, l.max))
		}
	}
	return over
}

// writeDiff prints the report as tables: the changed events, the summary, the
// change matrix and the candidate's rule errors.
func writeDiff(w io.Writer, rep *rulesdiff.Report) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	if len(rep.Changes) > 0 {
		fmt.Fprintln(tw, "EVENT\tJOB\tCATEGORY\tRETRY\tACTION\tCONFIDENCE\tCANDIDATE RULES")
		for _, c := range rep.Changes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Job,
				arrow(string(c.Current.Category), string(c.Candidate.Category)),
				arrow(yesNo(c.Current.Retryable), yesNo(c.Candidate.Retryable)),
				arrow(string(c.Current.Action), string(c.Candidate.Action)),
				fmt.Sprintf("%.2f -> %.2f", c.Current.Confidence, c.Candidate.Confidence),
				rulesOf(&c.Candidate))
		}
		fmt.Fprintln(tw)
	}
	s := rep.Summary
	fmt.Fprintf(tw, "Replayed %d failure events: %d changed.\n", s.Replayed, s.Changed)
	if s.Skipped > 0 {
		fmt.Fprintf(tw, "  skipped, without an event:\t%d\n", s.Skipped)
	}
	fmt.Fprintf(tw, "  category changes:\t%d\n", s.CategoryChanges)
	fmt.Fprintf(tw, "  retry-decision changes:\t%d (%d newly retried, %d no longer retried)\n", s.RetryChanges, s.NewlyRetried, s.NoLongerRetried)
	fmt.Fprintf(tw, "  action changes:\t%d\n", s.ActionChanges)
	fmt.Fprintf(tw, "  candidate rule errors:\ton %d events\n", s.RuleErrorEvents)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Matrix) > 0 {
		if err := writeMatrix(w, rep.Matrix); err != nil {
			return err
		}
	}
	if len(rep.RuleErrors) > 0 {
		fmt.Fprintln(w, "\nCandidate rule errors (such a rule counts as not matched):")
		for _, e := range rep.RuleErrors {
			fmt.Fprintln(w, "  "+e)
		}
	}
	return nil
}

// writeMatrix prints the category changes as a grid: a row per current category, a
// column per candidate category.
func writeMatrix(w io.Writer, cells []rulesdiff.Cell) error {
	var from, to []failure.Category
	count := map[[2]failure.Category]int{}
	for _, c := range cells {
		if !slices.Contains(from, c.From) {
			from = append(from, c.From)
		}
		if !slices.Contains(to, c.To) {
			to = append(to, c.To)
		}
		count[[2]failure.Category{c.From, c.To}] = c.Count
	}
	slices.Sort(from)
	slices.Sort(to)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprint(tw, "CURRENT \\ CANDIDATE")
	for _, c := range to {
		fmt.Fprintf(tw, "\t%s", c)
	}
	fmt.Fprintln(tw)
	for _, f := range from {
		fmt.Fprint(tw, f)
		for _, t := range to {
			if n := count[[2]failure.Category{f, t}]; n > 0 {
				fmt.Fprintf(tw, "\t%d", n)
			} else {
				fmt.Fprint(tw, "\t-")
			}
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// arrow is "a -> b", or a when they are the same.
func arrow(a, b string) string {
	if a == b {
		return a
	}
	return a + " -> " + b
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// rulesOf names the rules behind a verdict, or says it was learned.
func rulesOf(v *rulesdiff.Verdict) string {
	switch {
	case len(v.Rules) > 0:
		return strings.Join(v.Rules, ",")
	case v.Learned:
		return "(learned)"
	}
	return "-"
}

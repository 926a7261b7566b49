package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// labelledLine is one line of `autofix ledger corrections`: a FailureEvent with its
// label, in the format of the labelled corpus (rules/testdata/README.md), which
// classifier.ReadLabelled reads. Its source and note replace the event's own source
// ("source" is the corpus's field for where the text came from).
type labelledLine struct {
	failure.Event
	Expected classifier.Label `json:"expected"`
	Source   string           `json:"source"`
	Note     string           `json:"note"`
}

// correctionsSummary counts what `autofix ledger corrections` wrote and left out.
type correctionsSummary struct {
	written int
	// unreadable are corrections whose stored event does not decode; retired those
	// whose category the taxonomy no longer has; tooLarge those whose line would be
	// over the corpus reader's limit (failure.MaxPayload).
	unreadable, retired, tooLarge int
}

func newLedgerCorrectionsCmd() *cobra.Command {
	var (
		cf         configFlags
		since, out string
	)
	cmd := &cobra.Command{
		Use:   "corrections --out FILE",
		Short: "Write people's corrections of classifications as labelled events for training",
		Long: `Corrections writes, for every remediation whose classification a person corrected (the
review page, or POST /v1/remediations/{id}:correct), its failure event as the ledger
recorded it with the correction in force (the latest) as its label: JSON lines in the
labelled corpus's format (rules/testdata/README.md), each a FailureEvent plus
"expected": {"category", "retryable"}, "source": "ledger:<remediation id>" and
"note": "corrected by <who> at <time>: <note>". Oldest correction first.

	autofix ledger corrections --out corrections.jsonl
	autofix train-classifier rules/testdata/*.jsonl corrections.jsonl

--since keeps the corrections made at or after a time (RFC 3339), or within a
duration ago (720h). --out - writes to standard output; a file is written whole or
not at all, readable by its owner only (log tails can hold what a job printed).
Corrections that cannot be written as a labelled event (a stored event that no longer
decodes, a category the taxonomy no longer has) are left out and counted on standard
error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out: required (a file, or - for standard output)")
			}
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			store, err := cf.openLedger(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = store.Close() }()
			var sum correctionsSummary
			write := func(w io.Writer) error {
				var werr error
				sum, werr = writeCorrections(cmd, store, from, w)
				return werr
			}
			if out == "-" {
				err = write(cmd.OutOrStdout())
			} else {
				err = writeWhole(out, write)
			}
			if err != nil {
				return err
			}
			where := out
			if out == "-" {
				where = "standard output"
			}
			errOut := cmd.ErrOrStderr()
			fmt.Fprintf(errOut, "wrote %d corrected events to %s\n", sum.written, where)
			if n := sum.unreadable + sum.retired + sum.tooLarge; n > 0 {
				fmt.Fprintf(errOut, "left out %d: %d whose stored event does not decode, %d of a category the taxonomy no longer has, "+
					"%d over the %d-byte line limit\n", n, sum.unreadable, sum.retired, sum.tooLarge, failure.MaxPayload)
			}
			return nil
		},
	}
	cf.register(cmd, "data-dir", "db")
	cmd.Flags().StringVar(&since, "since", "", "only corrections made at or after this time (RFC 3339), or within this duration ago (720h)")
	cmd.Flags().StringVar(&out, "out", "", "the file to write (- for standard output)")
	return cmd
}

// parseSince reads --since: an RFC 3339 time, or a duration before now; "" is the
// zero time (every correction).
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since: %q is neither an RFC 3339 time nor a positive duration (720h)", v)
}

// writeCorrections writes the corrections in force made at or after since to w, one
// labelled event a line, and says what it left out on the command's standard error.
func writeCorrections(cmd *cobra.Command, store *ledger.Store, since time.Time, w io.Writer) (correctionsSummary, error) {
	var sum correctionsSummary
	bw := bufio.NewWriter(w)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the event's text as it was: "<", ">" and "&" stay themselves
	warn := func(id, format string, args ...any) {
		fmt.Fprintf(cmd.ErrOrStderr(), "autofix: correction of %s left out: %s\n", id, fmt.Sprintf(format, args...))
	}
	err := store.EachCorrection(cmd.Context(), since, func(c ledger.CorrectedEvent) error {
		corr := c.Correction
		switch {
		case c.Event == nil:
			sum.unreadable++
			warn(c.EventID, "%s", c.Unreadable)
			return nil
		case !corr.Category.Valid():
			sum.retired++
			warn(c.EventID, "the category %q is not one of the taxonomy's", corr.Category)
			return nil
		}
		note := fmt.Sprintf("corrected by %s at %s (remediation %s)", corr.Actor, corr.At.UTC().Format(time.RFC3339), c.EventID)
		if corr.Note != "" {
			note += ": " + corr.Note
		}
		buf.Reset()
		if err := enc.Encode(labelledLine{Event: *c.Event, Expected: classifier.Label{Category: corr.Category, Retryable: corr.Retryable},
			// The source is the job's template, not the remediation: retries of one job
			// print the same text, and cross-validation groups by source, so a
			// template's corrections must stay in one fold.
			Source: "ledger:" + c.Event.HistoryKey(), Note: note}); err != nil {
			return fmt.Errorf("encode the correction of %s: %w", c.EventID, err)
		}
		if buf.Len()-1 > failure.MaxPayload { // without its newline
			sum.tooLarge++
			warn(c.EventID, "its line is %d bytes, over the %d-byte limit of a labelled event", buf.Len()-1, failure.MaxPayload)
			return nil
		}
		sum.written++
		_, err := bw.Write(buf.Bytes())
		return err
	})
	if err != nil {
		return sum, fmt.Errorf("corrections: %w", err)
	}
	return sum, bw.Flush()
}

// writeWhole writes path with write, whole or not at all: into a new file beside it
// (mode 0600), synced, then renamed over path.
func writeWhole(path string, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

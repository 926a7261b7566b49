package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// ledgerLine is one line of `autofix ledger --json`.
type ledgerLine struct {
	EventID  string           `json:"eventId"`
	State    ledger.State     `json:"state"`
	Category failure.Category `json:"category,omitempty"`
	Error    string           `json:"error,omitempty"`
	Reason   string           `json:"reason,omitempty"`
	Job      string           `json:"job,omitempty"`
	Chain    string           `json:"chain,omitempty"`
	Attempts []ledgerAttempt  `json:"attempts"`
}

type ledgerAttempt struct {
	Attempt     int               `json:"attempt"`
	JobName     string            `json:"jobName"`
	Resources   failure.Resources `json:"resources"`
	SubmittedAt *time.Time        `json:"submittedAt,omitempty"`
	Outcome     string            `json:"outcome,omitempty"`
}

func newLedgerCmd() *cobra.Command {
	var cf configFlags
	var asJSON, outcomes bool
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Print what the ledger holds: one line per event with its state and attempts",
		Long: `Ledger prints every event the ledger holds, oldest first: its state, category, the
error of a rejected (malformed or invalid) message, and the attempt autofix asked for,
with when it was submitted and its outcome. --json writes one JSON object per line:
{"eventId","state","category","error","attempts":[{"attempt","resources","submittedAt","outcome"}]}.
--outcomes prints instead the recorded runs of every template (failed runs and the
outcomes of attempts), one JSON object per line: the format "recommend --history"
and training read. "ledger corrections" writes people's corrections of
classifications as labelled events for training.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := cf.openLedger(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = store.Close() }()
			if outcomes {
				enc := json.NewEncoder(cmd.OutOrStdout())
				return store.EachOutcome(cmd.Context(), func(_ string, o failure.Outcome) error { return enc.Encode(o) })
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "EVENT\tSTATE\tCATEGORY\tJOB\tATTEMPT\tNOTE")
			}
			err = store.Each(cmd.Context(), func(r ledger.Remediation) error {
				l := ledgerLine{EventID: r.EventID, State: r.State, Category: r.Category, Error: r.Error, Reason: r.Reason,
					Chain: r.ChainID, Attempts: []ledgerAttempt{}}
				if r.JobName != "" {
					l.Job = r.Namespace + "/" + r.JobName
				}
				for _, a := range r.Attempts {
					la := ledgerAttempt{Attempt: a.Number, JobName: a.JobName, Resources: a.Resources, Outcome: a.Outcome}
					if !a.SubmittedAt.IsZero() {
						t := a.SubmittedAt.UTC()
						la.SubmittedAt = &t
					}
					l.Attempts = append(l.Attempts, la)
				}
				if asJSON {
					return enc.Encode(l)
				}
				attempt, note := "", l.Reason
				if len(l.Attempts) > 0 {
					a := l.Attempts[len(l.Attempts)-1]
					attempt = fmt.Sprintf("%d %s", a.Attempt, a.JobName)
				}
				if l.Error != "" {
					note = l.Error
				}
				_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.EventID, l.State, l.Category, l.Job, attempt, note)
				return err
			})
			if err != nil {
				return err
			}
			return tw.Flush()
		},
	}
	cf.register(cmd, "data-dir", "db")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	cmd.Flags().BoolVar(&outcomes, "outcomes", false, "print the recorded runs (history) instead of the events")
	cmd.AddCommand(newLedgerCorrectionsCmd(), newLedgerDeliveriesCmd())
	return cmd
}

// openLedger opens the existing ledger of the configuration: the PostgreSQL one of
// db, or the SQLite file in dataDir (which must exist: a typo should not create an
// empty ledger).
func (c *configFlags) openLedger(cmd *cobra.Command) (*ledger.Store, error) {
	cfg, err := c.load(cmd)
	if err != nil {
		return nil, err
	}
	dsn := cfg.LedgerDSN()
	if cfg.DB == "" {
		if _, err := os.Stat(dsn); err != nil {
			return nil, fmt.Errorf("no ledger at %s: %w", dsn, err)
		}
	}
	return ledger.Open(cmd.Context(), dsn)
}

package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/ledger"
)

// deliveryLine is one line of "ledger deliveries --json".
type deliveryLine struct {
	Webhook    string     `json:"webhook"`
	Message    string     `json:"message"`
	Status     string     `json:"status"`
	Attempts   int        `json:"attempts"`
	HTTPStatus int        `json:"httpStatus,omitempty"`
	LastError  string     `json:"lastError,omitempty"`
	NextAt     *time.Time `json:"nextAt,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	UpdatedAt  time.Time  `json:"updatedAt"`
}

func newLedgerDeliveriesCmd() *cobra.Command {
	var (
		cf     configFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "deliveries REMEDIATION",
		Short: "Print the webhook messages about a remediation and whether they were delivered",
		Long: `Deliveries prints what the webhooks of notify.webhooks were told of a remediation's
review (docs/api.md, "Webhooks"), oldest first: the webhook, the message (pending,
escalated, ended), its status (queued, delivered, failed, superseded, skipped), the
attempts made, the last answer's status and error, and when the next attempt is due.
--json writes one JSON object per line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := cf.openLedger(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = store.Close() }()
			ds, err := store.Deliveries(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "WEBHOOK\tMESSAGE\tSTATUS\tATTEMPTS\tLAST ANSWER\tNEXT")
			}
			for _, d := range ds {
				l := deliveryLine{Webhook: d.Webhook, Message: string(d.Kind), Status: string(d.Status), Attempts: d.Attempts,
					HTTPStatus: d.HTTPStatus, LastError: d.LastError, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
				if d.Status == ledger.DeliveryQueued {
					l.NextAt = &d.NextAt
				}
				if asJSON {
					if err := enc.Encode(l); err != nil {
						return err
					}
					continue
				}
				answer, next := "", ""
				if l.HTTPStatus != 0 {
					answer = fmt.Sprint(l.HTTPStatus)
				}
				if l.LastError != "" {
					answer = l.LastError
				}
				if l.NextAt != nil {
					next = l.NextAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", l.Webhook, l.Message, l.Status, l.Attempts, answer, next)
			}
			return tw.Flush()
		},
	}
	cf.register(cmd, "data-dir", "db")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}

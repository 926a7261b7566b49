package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/registry"
)

// shadowCmd is "models shadow": start or stop the shadow evaluation of a version,
// or report how it scores.
func (mc *modelsCmd) shadowCmd() *cobra.Command {
	var (
		stop, report, asJSON bool
		reason               string
	)
	c := &cobra.Command{Use: "shadow [VERSION]",
		Short: "Evaluate a version in shadow next to the active one (--stop ends it; --report scores it)",
		Long: `shadow VERSION makes every replica also predict each live decision with VERSION,
which changes nothing: its predictions are recorded with the decisions and, as the
attempts end, scored next to the active version's (--report). A promotion's gates
read them once models.promotion.minOutcomes of them ended. One version at a time.
shadow --stop ends the evaluation; the predictions recorded stay.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case stop && (len(args) > 0 || report):
				return errors.New("--stop: takes no VERSION, and not with --report")
			case !stop && len(args) == 0:
				return errors.New("VERSION: required (or --stop)")
			case asJSON && !report:
				return errors.New("--json: only with --report")
			}
			version := 0
			if len(args) == 1 {
				v, err := versionArg(args[0])
				if err != nil {
					return err
				}
				version = v
			}
			reg, done, err := mc.open(cmd)
			if err != nil {
				return err
			}
			defer done()
			out := cmd.OutOrStdout()
			if report {
				rep, err := reg.ShadowReport(cmd.Context(), version)
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(out).Encode(api.NewShadowReportView(&rep))
				}
				writeShadowReport(out, &rep)
				return nil
			}
			change := registry.ShadowChange{Actor: mc.by, Reason: reason}
			if stop {
				if _, err := reg.StopShadow(cmd.Context(), change); err != nil {
					return err
				}
				fmt.Fprintln(out, "shadow evaluation stopped; every replica stops it after its next poll")
				return nil
			}
			if _, err := reg.StartShadow(cmd.Context(), version, change); err != nil {
				return err
			}
			fmt.Fprintf(out, "version %d is evaluated in shadow; every replica predicts with it after its next poll\n", version)
			return nil
		}}
	c.Flags().BoolVar(&stop, "stop", false, "stop the shadow evaluation")
	c.Flags().BoolVar(&report, "report", false, "score VERSION's shadow predictions next to the active version's, change nothing")
	c.Flags().BoolVar(&asJSON, "json", false, "the report as GET /v1/models/{version}/shadow gives it")
	c.Flags().StringVar(&reason, "reason", "", "why (recorded)")
	return c
}

// writeShadowReport prints a shadow report for people.
func writeShadowReport(w io.Writer, r *registry.ShadowReport) {
	fmt.Fprintf(w, "version %d in shadow of version %d: %d decisions made %s to %s (%d its prediction failed on), %d retries not ended, "+
		"%d that ran another configuration than the one chosen (not scored)\n",
		r.Version, r.ActiveVersion, r.Decisions, r.Since.UTC().Format(time.RFC3339), r.Until.UTC().Format(time.RFC3339), r.Errors, r.Pending,
		r.Edited)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "on %d retries that ended\tactive (version %d)\tcandidate (version %d)\n", r.Active.N, r.ActiveVersion, r.Version)
	a, c := &r.Active, &r.Candidate
	fmt.Fprintf(tw, "log-loss\t%.4f\t%.4f\n", a.LogLoss, c.LogLoss)
	fmt.Fprintf(tw, "ECE\t%.4f\t%.4f\n", a.ECE, c.ECE)
	fmt.Fprintf(tw, "Brier\t%.4f\t%.4f\n", a.Brier, c.Brier)
	fmt.Fprintf(tw, "AUC\t%.3f\t%.3f\n", a.AUC, c.AUC)
	_ = tw.Flush()
	ch := &r.Changes
	fmt.Fprintf(w, "it would have changed %d decisions:\n", ch.Total)
	fmt.Fprintf(w, "  retried %d the active did not (its expected cost $%.2f)\n", ch.Retry, ch.RetryExpectedCost)
	fmt.Fprintf(w, "  not retried %d the active did: %d of them fixed the failure (fixes lost), the failed ones cost $%.2f (spend saved)\n",
		ch.NoRetry, ch.LostFixes, ch.SavedSpend)
	fmt.Fprintf(w, "  chose another configuration for %d (%d ended, %d succeeded with the active's); expected cost $%.2f (active) vs $%.2f (its own)\n",
		ch.Configuration, ch.Ended, ch.Succeeded, ch.ActiveExpectedCost, ch.CandidateExpectedCost)
}

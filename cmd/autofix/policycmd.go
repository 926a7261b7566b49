package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/ledger"
)

func newPolicyCmd() *cobra.Command {
	var cf configFlags
	var reason, by string
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "The kill switch, graduated autonomy, and where things stand",
		Long: `Pause stops every automatic action of every replica sharing the ledger: fixes the
policy would apply go to review instead, and nothing is submitted until resume.
Status prints whether automatic actions are paused and how many remediations are in
each state.`,
	}
	set := func(paused bool) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			if reason == "" {
				return fmt.Errorf("--reason: required (it goes in the audit trail)")
			}
			store, err := cf.openLedger(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = store.Close() }()
			if err := store.SetPaused(cmd.Context(), paused, by, reason, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "automatic actions %s by %s: %s\n", map[bool]string{true: "paused", false: "resumed"}[paused], by, reason)
			return nil
		}
	}
	pause := &cobra.Command{Use: "pause", Short: "Pause all automatic actions", Args: cobra.NoArgs, RunE: set(true)}
	resume := &cobra.Command{Use: "resume", Short: "Resume automatic actions", Args: cobra.NoArgs, RunE: set(false)}
	status := &cobra.Command{Use: "status", Short: "Whether automatic actions are paused, and remediations by state", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := cf.openLedger(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = store.Close() }()
			paused, err := store.Paused(cmd.Context())
			if err != nil {
				return err
			}
			counts, err := store.Counts(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "paused: %v\n", paused)
			for _, st := range ledger.States() {
				if st == ledger.Received || st == ledger.Classified || st == ledger.Recommended {
					continue // passing states: an event is in them only within a transaction
				}
				fmt.Fprintf(out, "%-15s %d\n", st, counts[st])
			}
			return nil
		}}
	user := os.Getenv("USER")
	if user == "" {
		user = "cli"
	}
	for _, c := range []*cobra.Command{pause, resume, status} {
		cf.register(c, "data-dir", "db")
		cmd.AddCommand(c)
	}
	cmd.AddCommand(newAutonomyCmd(user))
	for _, c := range []*cobra.Command{pause, resume} {
		c.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the audit trail)")
		c.Flags().StringVar(&by, "by", user, "who is doing it")
	}
	return cmd
}

package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/rules"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Check, list and diff classification rule sets",
	}
	cmd.AddCommand(newRulesCheckCmd(), newRulesListCmd(), newRulesDiffCmd())
	return cmd
}

func newRulesCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check [DIR]",
		Short: "Compile a rule set and run its test cases (the embedded defaults without DIR)",
		Long: `Check compiles every rule file (*.yaml) of DIR, or the embedded default rules, and
runs the test cases the files carry against the whole rule set. It prints every
problem and exits non-zero if a rule does not compile or a test fails.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			rs, name, err := loadRuleSet(args)
			if err != nil {
				var errs interface{ Unwrap() []error }
				if errors.As(err, &errs) {
					for _, e := range errs.Unwrap() {
						fmt.Fprintln(errOut, e)
					}
				} else {
					fmt.Fprintln(errOut, err)
				}
				fmt.Fprintf(errOut, "%s: the rule set does not load\n", name)
				return exitError(1)
			}
			c := classifier.New(rs, classifier.Options{})
			failures := c.Check()
			for _, f := range failures {
				fmt.Fprintln(errOut, f.Error())
			}
			if len(failures) > 0 {
				fmt.Fprintf(errOut, "%s: %d of %d tests failed\n", name, len(failures), len(rs.Tests()))
				return exitError(1)
			}
			fmt.Fprintf(out, "%s: %d rules compiled, %d tests passed\n", name, len(rs.Rules()), len(rs.Tests()))
			return nil
		},
	}
}

func newRulesListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list [DIR]",
		Short: "List the rules of a rule set, highest priority first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rs, _, err := loadRuleSet(args)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCATEGORY\tRETRYABLE\tACTION\tCONFIDENCE\tPRIORITY\tWHERE")
			for _, r := range rs.Rules() {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%.2f\t%d\t%s:%d\n", r.ID, r.Category, r.Retryable, r.Action, r.Confidence, r.Priority, r.File, r.Line)
			}
			return tw.Flush()
		},
	}
}

// loadRuleSet loads the rules of args[0], or the embedded defaults.
func loadRuleSet(args []string) (*classifier.RuleSet, string, error) {
	if len(args) == 0 {
		rs, err := classifier.Load(rules.FS)
		return rs, "embedded rules", err
	}
	rs, err := classifier.Load(os.DirFS(args[0]))
	return rs, args[0], err
}

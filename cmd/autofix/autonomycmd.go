package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/autonomy"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// newAutonomyCmd is `autofix policy autonomy`: graduated autonomy on the ledger, as
// `policy pause` works the kill switch, for whoever can open it.
func newAutonomyCmd(user string) *cobra.Command {
	var (
		cf       configFlags
		reason   string
		by       string
		workload string
		force    bool
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "autonomy",
		Short: "Graduated autonomy: the kinds of fix proposed to apply without review, grants and revocations",
		Long: `A kind of fix is a failure category on one job template (namespace/template), for
one kind of job (training, compression, deployment or batch), run as one kind of
workload (--workload: Job, the default, JobSet, RayJob or Workflow: a grant earned by a
template's Jobs does not apply to a JobSet of the same template). List shows every kind
people decided or whose attempt ended within policy.autonomy.window, with how often
people approved its fixes as recommended (approvals after an edit count apart, as
edited) and how often they worked, whether it passes
the thresholds, and whether it is proposed or granted. Grant lets a kind's fixes that
the rules would keep for review apply on their own (every replica within
policy.autonomy.pollInterval); a kind that does not pass needs --force and a reason.
Revoke sends it back to review. Both are recorded with the figures and audited.`,
	}
	open := func(cmd *cobra.Command) (*autonomy.Service, *ledger.Store, error) {
		cfg, err := cf.load(cmd)
		if err != nil {
			return nil, nil, err
		}
		store, err := cf.openLedger(cmd)
		if err != nil {
			return nil, nil, err
		}
		th := cfg.Policy.Autonomy
		return autonomy.New(autonomy.Options{Ledger: store, Thresholds: &th}), store, nil
	}
	kind := func(args []string) ledger.Kind {
		return ledger.Kind{Category: failure.Category(args[0]), Template: args[1], JobKind: failure.JobKind(args[2]), Workload: workload}
	}
	list := &cobra.Command{Use: "list", Short: "Every kind of fix with its figures, proposals and grants", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, store, err := open(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = store.Close() }()
			l, err := svc.List(cmd.Context())
			if err != nil {
				return err
			}
			view := api.NewAutonomyList(&l, svc.Thresholds())
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(view)
			}
			printAutonomy(cmd.OutOrStdout(), &view)
			return nil
		}}
	grant := &cobra.Command{Use: "grant CATEGORY NAMESPACE/TEMPLATE JOBKIND", Short: "Let a kind of fix apply without review",
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, store, err := open(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = store.Close() }()
			c, err := svc.Grant(cmd.Context(), kind(args), by, reason, force)
			if err != nil {
				return err
			}
			forced := ""
			if c.Forced {
				forced = " (forced past: " + strings.Join(c.Evidence.Failed, "; ") + ")"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "autonomy granted to %s by %s%s\n", c.Kind, c.Actor, forced)
			return nil
		}}
	revoke := &cobra.Command{Use: "revoke CATEGORY NAMESPACE/TEMPLATE JOBKIND", Short: "Send a kind of fix back to review",
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return fmt.Errorf("--reason: required (it goes in the audit trail)")
			}
			svc, store, err := open(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = store.Close() }()
			c, err := svc.Revoke(cmd.Context(), kind(args), by, reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "autonomy revoked from %s by %s: %s\n", c.Kind, c.Actor, c.Reason)
			return nil
		}}
	for _, c := range []*cobra.Command{list, grant, revoke} {
		cf.register(c, "data-dir", "db")
		cmd.AddCommand(c)
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print GET /v1/autonomy's JSON")
	for _, c := range []*cobra.Command{grant, revoke} {
		c.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit trail; required to revoke and to force)")
		c.Flags().StringVar(&by, "by", user, "who is doing it")
		c.Flags().StringVar(&workload, "workload", ledger.WorkloadJob, "the workload's API kind: Job, JobSet, RayJob or Workflow")
	}
	grant.Flags().BoolVar(&force, "force", false, "grant a kind that does not pass the thresholds (recorded as forced)")
	return cmd
}

// printAutonomy prints l as a table, proposals first.
func printAutonomy(w io.Writer, l *api.AutonomyList) {
	fmt.Fprintf(w, "kinds of fix received %s to %s", l.Since.Format("2006-01-02 15:04"), l.Until.Format("2006-01-02 15:04 MST"))
	if !l.Enabled {
		fmt.Fprint(w, " (autonomy is off: policy.autonomy.enabled)")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCATEGORY\tTEMPLATE\tJOBS\tWORKLOAD\tAPPROVED\tEDITED\tSUCCEEDED\tAUTOMATIC\tNOT MET")
	for _, proposed := range []bool{true, false} {
		for _, k := range l.Kinds {
			if k.Proposed != proposed {
				continue
			}
			status := "-"
			switch {
			case k.Proposed:
				status = "proposed"
			case k.Grant != nil && k.Grant.Forced:
				status = "granted (forced) by " + k.Grant.By
			case k.Grant != nil:
				status = "granted by " + k.Grant.By
			}
			o := ledger.AttemptCounts{Succeeded: k.Reviewed.Succeeded + k.Automatic.Succeeded, Failed: k.Reviewed.Failed + k.Automatic.Failed}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%d\t%d/%d\t%d/%d\t%s\n", status, k.Category, k.Template, k.JobKind, k.Workload, k.Approved,
				k.Approved+k.Edited+k.Rejected, k.Edited, o.Succeeded, o.Total(), k.Automatic.Succeeded, k.Automatic.Total(), strings.Join(k.Unmet, "; "))
		}
	}
	_ = tw.Flush()
}

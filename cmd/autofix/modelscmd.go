package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/registry"
	"github.com/autofix/autofix/service"
)

// modelsCmd holds what the models subcommands share: serve's configuration and
// ledger, and who acts.
type modelsCmd struct {
	cf configFlags
	by string
}

// open opens the ledger of the configuration and its model registry, with the
// configuration's catalogue and gates; close closes the ledger.
func (mc *modelsCmd) open(cmd *cobra.Command) (reg *registry.Registry, close func(), err error) {
	cfg, err := mc.cf.load(cmd)
	if err != nil {
		return nil, nil, err
	}
	store, err := mc.cf.openLedger(cmd)
	if err != nil {
		return nil, nil, err
	}
	reg, err = registry.New(registry.Options{Ledger: store, Catalogue: cfg.Catalogue, Gates: service.Gates(&cfg.Models)})
	if err != nil {
		_ = store.Close()
		return nil, nil, err
	}
	if _, _, err := reg.EnsureDefault(cmd.Context(), "autofix"); err != nil {
		_ = store.Close()
		return nil, nil, err
	}
	return reg, func() { _ = store.Close() }, nil
}

func newModelsCmd() *cobra.Command {
	mc := &modelsCmd{}
	cmd := &cobra.Command{
		Use:   "models",
		Short: "The model registry: register versions of the retry models, list them, promote one, roll back",
		Long: `Models manages the model registry in serve's ledger (--config, --data-dir, --db),
as "policy" manages the kill switch: against the ledger, as whoever can open it.
Every replica runs the registry's active version, read from the ledger every
models.pollInterval. The embedded models are its first version, registered the first
time serve or this command opens an empty registry.

register adds an artifact of "autofix train --out" as the next version, with where it
came from: its parent (the active version unless --parent), what it was trained on
and when (its evaluation's window: the ledger's, or the simulator's), this binary's
VCS revision and its held-out metrics. promote scores a version and the active one on
the same retries the ledger recorded with their outcomes (those received within
models.promotion.window, after both versions' training data) and makes it active if
it passes the gates: at least minOutcomes outcomes, an expected calibration error at
most the active's plus calibrationMargin, and a log-loss below the active's; --force
with a --reason promotes past them. rollback makes an earlier version active again,
with a reason. Each promotion and rollback is recorded with who, when, from, to and
the figures, and in the audit trail. shadow evaluates a version on the live
decisions next to the active one, changing nothing; once enough of those decisions'
attempts ended, promote's gates read them instead. docs/models.md says why.`,
	}
	user := os.Getenv("USER")
	if user == "" {
		user = "cli"
	}
	for _, c := range []*cobra.Command{mc.listCmd(), mc.showCmd(), mc.registerCmd(), mc.promoteCmd(), mc.rollbackCmd(), mc.shadowCmd()} {
		mc.cf.register(c, "data-dir", "db")
		if c.Name() != "list" && c.Name() != "show" {
			c.Flags().StringVar(&mc.by, "by", user, "who is doing it (recorded)")
		}
		cmd.AddCommand(c)
	}
	return cmd
}

// versionArg reads a version number.
func versionArg(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("version %q: want a version number (1, 2, ...)", s)
	}
	return v, nil
}

func (mc *modelsCmd) listCmd() *cobra.Command {
	var (
		asJSON bool
		limit  int
	)
	c := &cobra.Command{Use: "list", Short: "The registered versions, newest first, and the latest promotions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, done, err := mc.open(cmd)
			if err != nil {
				return err
			}
			defer done()
			list, active, err := reg.List(cmd.Context(), limit)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for i := range list {
					if err := enc.Encode(api.NewModelVersionView(&list[i], active, 0)); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tACTIVE\tNAME\tPARENT\tSOURCE\tDATA\tN\tLOG-LOSS\tECE\tAUC\tREGISTERED")
			for _, v := range list {
				mark := ""
				if v.Version == active {
					mark = "*"
				}
				data := "-"
				if !v.DataFrom.IsZero() {
					data = v.DataFrom.UTC().Format("2006-01-02") + ".." + v.DataTo.UTC().Format("2006-01-02")
				}
				m := v.Metrics
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%d\t%.4f\t%.4f\t%.3f\t%s by %s\n", v.Version, mark, v.Name, v.Parent, v.Source,
					data, m.N, m.LogLoss, m.ECE, m.AUC, v.RegisteredAt.UTC().Format(time.RFC3339), v.RegisteredBy)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			proms, err := reg.Promotions(cmd.Context(), 10)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, "\nlatest promotions:")
			for _, p := range proms {
				fmt.Fprintf(out, "  %s %s %d -> %d by %s", p.At.UTC().Format(time.RFC3339), p.Action, p.From, p.To, p.Actor)
				if p.Reason != "" {
					fmt.Fprintf(out, ": %s", p.Reason)
				}
				fmt.Fprintln(out)
			}
			return nil
		}}
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per version, as GET /v1/models lists them")
	c.Flags().IntVar(&limit, "limit", 100, "the latest N versions (at most 1000)")
	return c
}

func (mc *modelsCmd) showCmd() *cobra.Command {
	var out string
	c := &cobra.Command{Use: "show VERSION", Short: "A version, as GET /v1/models/{version} gives it; --out writes its artifact",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			version, err := versionArg(args[0])
			if err != nil {
				return err
			}
			reg, done, err := mc.open(cmd)
			if err != nil {
				return err
			}
			defer done()
			v, err := reg.Get(cmd.Context(), version)
			if err != nil {
				return err
			}
			_, active, err := reg.List(cmd.Context(), 1)
			if err != nil {
				return err
			}
			if out != "" {
				if err := os.WriteFile(out, v.Content, 0o644); err != nil { //nolint:gosec // a model artifact is not secret
					return err
				}
			}
			view := api.NewModelVersionView(&v, active, 0)
			view.Content = nil
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(view)
		}}
	c.Flags().StringVar(&out, "out", "", "write the version's artifact to this file (autofix train --models reads it)")
	return c
}

func (mc *modelsCmd) registerCmd() *cobra.Command {
	var (
		parent   int
		note     string
		embedded bool
	)
	c := &cobra.Command{Use: "register FILE | --embedded", Short: "Register a models artifact (autofix train --out) as the next version",
		Args: func(_ *cobra.Command, args []string) error {
			if embedded != (len(args) == 0) || len(args) > 1 {
				return errors.New("want a file of models, or --embedded")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var (
				data []byte
				err  error
			)
			if embedded {
				args = []string{"the embedded models"}
				data = models.DefaultArtifact()
			} else if data, err = readBounded(args[0], ledger.MaxModelContent); err != nil {
				return err
			}
			reg, done, err := mc.open(cmd)
			if err != nil {
				return err
			}
			defer done()
			v, err := reg.Register(cmd.Context(), data, registry.Registration{Actor: mc.by, Parent: parent, Note: note})
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s as version %d (parent %d, %s, sha256 %s); promote it with: autofix models promote %d\n",
				v.Name, v.Version, v.Parent, v.Source, v.SHA256, v.Version)
			return nil
		}}
	c.Flags().IntVar(&parent, "parent", 0, "the version it derives from (default: the active one)")
	c.Flags().StringVar(&note, "note", "", "what it is (recorded)")
	c.Flags().BoolVar(&embedded, "embedded", false, "register the models embedded in this binary (after an upgrade that changed them)")
	return c
}

// readBounded reads the file at path, refusing one over limit bytes.
func readBounded(path string, limit int) ([]byte, error) {
	f, err := os.Open(path) // #nosec G304 -- the operator names the file
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%s: over the %d-byte limit of a model artifact", path, limit)
	}
	return data, nil
}

func (mc *modelsCmd) promoteCmd() *cobra.Command {
	var (
		force, dryRun bool
		reason        string
	)
	c := &cobra.Command{Use: "promote VERSION", Short: "Make a version the active one if it passes the gates (--force with a --reason: whatever they say)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			version, err := versionArg(args[0])
			if err != nil {
				return err
			}
			if dryRun && force {
				return errors.New("--dry-run: not with --force")
			}
			reg, done, err := mc.open(cmd)
			if err != nil {
				return err
			}
			defer done()
			out := cmd.OutOrStdout()
			if dryRun {
				ev, err := reg.Evaluate(cmd.Context(), version)
				if err != nil {
					return err
				}
				writeGates(out, &ev)
				return nil
			}
			p, ev, err := reg.Promote(cmd.Context(), version, registry.Promotion{Actor: mc.by, Force: force, Reason: reason})
			if ev.Candidate.Version != 0 {
				writeGates(out, &ev)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "version %d is active (%s, promotion %d, from version %d); every replica runs it after its next poll\n",
				p.To, p.Action, p.Seq, p.From)
			return nil
		}}
	c.Flags().BoolVar(&force, "force", false, "promote even if a gate fails (needs --reason)")
	c.Flags().StringVar(&reason, "reason", "", "why (required with --force; recorded)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the gates' figures, promote nothing")
	return c
}

func (mc *modelsCmd) rollbackCmd() *cobra.Command {
	var reason string
	c := &cobra.Command{Use: "rollback VERSION", Short: "Make a version registered before the active one active again (needs --reason)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			version, err := versionArg(args[0])
			if err != nil {
				return err
			}
			if reason == "" {
				return errors.New("--reason: required (it goes in the audit trail)")
			}
			reg, done, err := mc.open(cmd)
			if err != nil {
				return err
			}
			defer done()
			p, ev, err := reg.Rollback(cmd.Context(), version, registry.Promotion{Actor: mc.by, Reason: reason})
			if err != nil {
				return err
			}
			writeGates(cmd.OutOrStdout(), &ev)
			fmt.Fprintf(cmd.OutOrStdout(), "rolled back to version %d (promotion %d, from version %d); every replica runs it after its next poll\n",
				p.To, p.Seq, p.From)
			return nil
		}}
	c.Flags().StringVar(&reason, "reason", "", "why (required; recorded)")
	return c
}

// writeGates prints the gates' figures: the two versions side by side, and which
// gates failed.
func writeGates(w io.Writer, ev *registry.Evaluation) {
	g := &ev.Gates
	if g.Basis == ledger.GatesShadow {
		fmt.Fprintf(w, "scored on %d live decisions predicted in shadow, made %s to %s\n", g.Outcomes,
			g.Since.UTC().Format(time.RFC3339), g.Until.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "scored on %d retries received %s to %s, replayed (%d unreadable, %d without an outcome left out)\n", g.Outcomes,
			g.Since.UTC().Format(time.RFC3339), g.Until.UTC().Format(time.RFC3339), ev.Stats.Unreadable, ev.Stats.NoOutcome)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\tactive (version %d)\tcandidate (version %d)\n", ev.Active.Version, ev.Candidate.Version)
	a, c := &g.Active, &g.Candidate
	fmt.Fprintf(tw, "log-loss\t%.4f\t%.4f\n", a.LogLoss, c.LogLoss)
	fmt.Fprintf(tw, "ECE\t%.4f\t%.4f\n", a.ECE, c.ECE)
	fmt.Fprintf(tw, "Brier\t%.4f\t%.4f\n", a.Brier, c.Brier)
	fmt.Fprintf(tw, "AUC\t%.3f\t%.3f\n", a.AUC, c.AUC)
	_ = tw.Flush()
	if g.Passed() {
		fmt.Fprintf(w, "gates passed (at least %d outcomes, ECE within %.4f of the active's, a lower log-loss)\n", g.MinOutcomes, g.CalibrationMargin)
		return
	}
	fmt.Fprintln(w, "gates failed:")
	for _, f := range g.Failed {
		fmt.Fprintln(w, "  "+f)
	}
}

package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/auth"
)

func newTokenCmd() *cobra.Command {
	var cf configFlags
	var name, role string
	// tokenFile is serve's token file, in the data directory of its configuration.
	tokenFile := func(cmd *cobra.Command) (string, error) {
		cfg, err := cf.load(cmd)
		return filepath.Join(cfg.DataDir, auth.StoreFile), err
	}
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke the bearer tokens of the HTTP API",
		Long: `Requests to the HTTP API carry a token: "Authorization: Bearer <secret>". Each
token has a name, which the audit trail records, and a role: viewer, approver or
admin, each allowed everything the one before it is.

The tokens live in DATA_DIR/` + auth.StoreFile + `, which holds only the SHA-256 of
each secret: create prints the secret once, and it cannot be shown again. A running
serve reads the file again when it is shown a token it does not know (at most once a
second) and every 10 seconds, so a created token works at once, and a revoked one
stops working within 10 seconds, without a restart.

In a cluster, tokens can also come from the Secret autofix-tokens in autofix's
namespace (each key a token's name, its value "<role>:<secret>"); change that Secret
to change them, as these commands only edit the file.`,
	}
	create := &cobra.Command{Use: "create", Short: "Create a token and print its secret", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return fmt.Errorf("--name: required")
			}
			r, err := auth.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			path, err := tokenFile(cmd)
			if err != nil {
				return err
			}
			store, err := auth.OpenStore(path)
			if err != nil {
				return err
			}
			secret, err := store.Create(name, r)
			if err != nil {
				return err
			}
			// The secret alone on stdout, so that it can be piped into a secret manager;
			// the advice on stderr.
			fmt.Fprintln(cmd.OutOrStdout(), secret)
			fmt.Fprintf(cmd.ErrOrStderr(), `created token %q (role %s) in %s.
This is the only time its secret is shown: store it now (a secret manager, not a file
in the repository). Send it as "Authorization: Bearer <secret>". A running serve
accepts it at once; "autofix token revoke %s" takes it back.
`, name, r, path, name)
			return nil
		}}
	list := &cobra.Command{Use: "list", Short: "List the tokens: name, role and creation time", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := tokenFile(cmd)
			if err != nil {
				return err
			}
			store, err := auth.OpenStore(path)
			if err != nil {
				return err
			}
			tokens := store.List()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
			for _, t := range tokens {
				created := "-"
				if !t.Created.IsZero() {
					created = t.Created.UTC().Format("2006-01-02T15:04:05Z")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Role, created)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(tokens) == 0 {
				// An empty table may be a mistyped --data-dir: say which file was read.
				fmt.Fprintf(cmd.ErrOrStderr(), "no tokens in %s\n", path)
			}
			return nil
		}}
	revoke := &cobra.Command{Use: "revoke NAME", Short: "Revoke a token", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := tokenFile(cmd)
			if err != nil {
				return err
			}
			store, err := auth.OpenStore(path)
			if err != nil {
				return err
			}
			if err := store.Revoke(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked token %q; a running serve refuses it within 10 seconds\n", args[0])
			return nil
		}}
	for _, c := range []*cobra.Command{create, list, revoke} {
		cf.register(c, "data-dir")
		cmd.AddCommand(c)
	}
	create.Flags().StringVar(&name, "name", "", "the token's name, recorded in the audit trail (required; lowercase letters, digits and '-')")
	create.Flags().StringVar(&role, "role", "", "viewer, approver or admin (required)")
	return cmd
}

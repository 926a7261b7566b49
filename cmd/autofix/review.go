package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/api/client"
)

// `autofix review`: the fixes waiting for a person, from the terminal, through a
// running service's API (docs/api.md, "From the terminal").

func newReviewCmd() *cobra.Command {
	var cf connFlags
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "review",
		Short: "List, show, approve and reject the fixes waiting for review, through a running service's API",
		Long: `The review commands talk to a running "autofix serve" through its HTTP API, as
kubectl talks to a cluster:

  autofix review list                      # the fixes waiting for review
  autofix review show ID                   # one, with its evidence, options and audit trail
  autofix review approve ID [--option N] [--reason TEXT]
  autofix review reject ID --reason TEXT

The server: --server, else $AUTOFIX_SERVER, else ` + defaultServer + ` (serve's default
http.addr). An https:// server's certificate is checked against the system's
authorities, or those of --ca-file.

The token ("autofix token create" makes one; approve and reject need the approver
role, list and show viewer): --token, else --token-file, else $AUTOFIX_TOKEN — the
first one given is used. --token shows the token to anyone who can list processes;
prefer a file (mode 0600) or the environment. The token is never printed, in errors
or with --verbose.

Exit status: 0 done; 1 an error (the server unreachable, the token refused, a bad
flag); 3 the remediation does not exist; 4 it cannot take the decision as it stands
(not pending_review, or its chain has used its attempts).`,
	}
	cf.register(cmd)
	out.register(cmd)
	cmd.AddCommand(newReviewListCmd(&cf, &out), newReviewShowCmd(&cf, &out), newReviewApproveCmd(&cf, &out), newReviewRejectCmd(&cf, &out))
	return cmd
}

// outputFlags choose how results are printed.
type outputFlags struct {
	format string
	json   bool
}

func (o *outputFlags) register(cmd *cobra.Command) {
	p := cmd.PersistentFlags()
	p.StringVarP(&o.format, "output", "o", "table", "table, wide (list: more columns) or json (the API's objects)")
	p.BoolVar(&o.json, "json", false, "the same as -o json")
}

// mode is the output format, checked.
func (o *outputFlags) mode() (string, error) {
	switch {
	case o.json && o.format != "table" && o.format != "json":
		return "", fmt.Errorf("--json and -o %s: give one", sanitizeLine(o.format))
	case o.json:
		return "json", nil
	case o.format == "table" || o.format == "wide" || o.format == "json":
		return o.format, nil
	}
	return "", fmt.Errorf("-o %q: want table, wide or json", sanitizeLine(o.format))
}

// listOptions are the filters and the bound of `review list`.
type listOptions struct {
	states    []string
	namespace string
	category  string
	job       string
	limit     int
}

func newReviewListCmd(cf *connFlags, out *outputFlags) *cobra.Command {
	var lo listOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List remediations: those waiting for review, unless --state says otherwise",
		Long: `List prints the remediations newest first: by default those waiting for review
(pending_review), up to --limit. ACTION is what the chosen option changes (cut at
40 characters; -o wide shows it whole). -o wide adds the state, the attempt, the
chosen option's chance of success and expected cost, and the reason of the last
decision; -o json prints the API's objects, {"items": [...]}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return reviewExit(cmd, runReviewList(cmd, cf, out, lo))
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&lo.states, "state", []string{string(client.StatePendingReview)},
		"states to list, comma-separated, or all")
	f.StringVarP(&lo.namespace, "namespace", "n", "", "only jobs of this namespace")
	f.StringVar(&lo.category, "category", "", "only failures of this category")
	f.StringVar(&lo.job, "job", "", "only the job of this name")
	f.IntVar(&lo.limit, "limit", 100, "the most remediations to list (0: all)")
	return cmd
}

func runReviewList(cmd *cobra.Command, cf *connFlags, out *outputFlags, lo listOptions) error {
	mode, err := out.mode()
	if err != nil {
		return err
	}
	params, err := lo.params()
	if err != nil {
		return err
	}
	c, err := cf.dial(cmd)
	if err != nil {
		return err
	}
	var items []client.RemediationSummary
	var raw []json.RawMessage
	more := false
	// The cursors followed: one that comes back would be followed round for ever
	// with --limit 0.
	seen := map[string]bool{}
	for {
		page := 1000
		if lo.limit > 0 {
			page = min(page, lo.limit-len(items))
		}
		params.Limit = &page
		a, err := c.call(cmd.Context(), "list remediations", func(ctx context.Context) (*http.Response, error) {
			return c.api.ListRemediations(ctx, &params)
		})
		if err != nil {
			return err
		}
		var typed client.RemediationPage
		var rawPage struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(a.body, &typed); err != nil {
			return fmt.Errorf("list remediations: the answer of %s is not a page of remediations: %w", c.server, err)
		}
		if err := json.Unmarshal(a.body, &rawPage); err != nil || len(rawPage.Items) != len(typed.Items) {
			return fmt.Errorf("list remediations: the answer of %s is not a page of remediations", c.server)
		}
		n := min(len(typed.Items), page) // a server sending more than asked is cut to the page
		items, raw = append(items, typed.Items[:n]...), append(raw, rawPage.Items[:n]...)
		next := deref(typed.Next)
		if next == "" {
			break
		}
		if seen[next] || n == 0 {
			return fmt.Errorf("list remediations: the page cursor of %s does not advance (%q)", c.server, sanitizeLine(clip(next, 100)))
		}
		seen[next] = true
		params.After = &next
		if lo.limit > 0 && len(items) >= lo.limit {
			// A full page has a cursor whether or not anything follows it: one more
			// item says.
			one := 1
			params.Limit = &one
			a, err := c.call(cmd.Context(), "list remediations", func(ctx context.Context) (*http.Response, error) {
				return c.api.ListRemediations(ctx, &params)
			})
			if err != nil {
				return err
			}
			var probe client.RemediationPage
			more = json.Unmarshal(a.body, &probe) == nil && len(probe.Items) > 0
			break
		}
	}
	w := cmd.OutOrStdout()
	if more {
		fmt.Fprintf(cmd.ErrOrStderr(), "more remediations match than --limit %d: raise it (0 lists them all)\n", lo.limit)
	}
	if mode == "json" {
		if raw == nil {
			raw = []json.RawMessage{}
		}
		body, err := json.Marshal(map[string][]json.RawMessage{"items": raw})
		if err != nil {
			return err
		}
		return writeJSON(w, body)
	}
	if len(items) == 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "no remediations found (%s)\n", lo.describe())
		return nil
	}
	return writeList(w, items, mode == "wide", time.Now())
}

// params turns the flags into the API's query, checking each value.
func (lo listOptions) params() (client.ListRemediationsParams, error) {
	var p client.ListRemediationsParams
	if lo.limit < 0 {
		return p, fmt.Errorf("--limit %d: want 0 (all) or more", lo.limit)
	}
	var states []client.State
	for _, s := range lo.states {
		s = strings.TrimSpace(s)
		if s == "all" {
			states = nil
			break
		}
		if !client.State(s).Valid() {
			return p, fmt.Errorf("--state %q: not a state (want all, or some of received, classified, recommended, "+
				"pending_review, approved, submitted, succeeded, failed, rejected, abandoned)", sanitizeLine(s))
		}
		states = append(states, client.State(s))
	}
	if len(states) > 0 {
		p.State = &states
	}
	if lo.category != "" {
		if !client.Category(lo.category).Valid() {
			return p, fmt.Errorf("--category %q: not a category of the taxonomy", sanitizeLine(lo.category))
		}
		cat := client.Category(lo.category)
		p.Category = &cat
	}
	if lo.namespace != "" {
		p.Namespace = &lo.namespace
	}
	if lo.job != "" {
		p.Job = &lo.job
	}
	return p, nil
}

// describe says what was listed, for "no remediations found (...)".
func (lo listOptions) describe() string {
	parts := []string{"state " + strings.Join(lo.states, ",")}
	for _, f := range []struct{ name, v string }{{"namespace", lo.namespace}, {"category", lo.category}, {"job", lo.job}} {
		if f.v != "" {
			parts = append(parts, f.name+" "+f.v)
		}
	}
	return sanitizeLine(strings.Join(parts, ", "))
}

func newReviewShowCmd(cf *connFlags, out *outputFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Aliases: []string{"get", "describe"},
		Short:   "Show one remediation: its failure, evidence, recommendation, options, attempts and audit trail",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return reviewExit(cmd, runReviewShow(cmd, cf, out, args[0]))
		},
	}
}

func runReviewShow(cmd *cobra.Command, cf *connFlags, out *outputFlags, id string) error {
	mode, err := out.mode()
	if err != nil {
		return err
	}
	if err := checkID(id); err != nil {
		return err
	}
	c, err := cf.dial(cmd)
	if err != nil {
		return err
	}
	a, err := c.call(cmd.Context(), "show "+sanitizeLine(id), func(ctx context.Context) (*http.Response, error) {
		return c.api.GetRemediation(ctx, id)
	})
	if err != nil {
		return err
	}
	return printRemediation(cmd, c, mode, a.body, func(v *client.RemediationView) error {
		return writeShow(cmd.OutOrStdout(), v, time.Now())
	})
}

// printRemediation prints the API's RemediationView in body: as it is with -o json,
// else decoded, by text.
func printRemediation(cmd *cobra.Command, c *reviewClient, mode string, body []byte, text func(*client.RemediationView) error) error {
	if mode == "json" {
		return writeJSON(cmd.OutOrStdout(), body)
	}
	var v client.RemediationView
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("the answer of %s is not a remediation: %w", c.server, err)
	}
	return text(&v)
}

func newReviewApproveCmd(cf *connFlags, out *outputFlags) *cobra.Command {
	var reason string
	option := -1
	cmd := &cobra.Command{
		Use:   "approve ID",
		Short: "Approve a fix waiting for review: its chosen option, or another of its Pareto front",
		Long: `Approve submits the fix of a remediation waiting for review (pending_review):
the option the recommendation chose, or with --option another one of its Pareto
front ("autofix review show ID" lists them). It needs a token of the approver role.
A remediation in another state is refused (exit status 4).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := client.ApproveRequest{}
			if reason = strings.TrimSpace(reason); reason != "" {
				req.Reason = &reason
			}
			if cmd.Flags().Changed("option") {
				if option < 0 {
					return reviewExit(cmd, fmt.Errorf("--option %d: want an option's number (autofix review show lists them)", option))
				}
				req.Option = &option
			}
			return reviewExit(cmd, runReviewDecision(cmd, cf, out, "approve", args[0], req, req.Option))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail")
	cmd.Flags().IntVar(&option, "option", -1, "the option to apply, by its number (default: the chosen one)")
	return cmd
}

func newReviewRejectCmd(cf *connFlags, out *outputFlags) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "reject ID --reason TEXT",
		Short: "Reject a fix waiting for review, saying why",
		Long: `Reject refuses the fix of a remediation waiting for review (pending_review); the
reason is required and goes to the audit trail. It needs a token of the approver
role. A remediation in another state is refused (exit status 4).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason = strings.TrimSpace(reason); reason == "" {
				return reviewExit(cmd, errors.New("--reason: required: say why the fix is rejected (it goes to the audit trail)"))
			}
			return reviewExit(cmd, runReviewDecision(cmd, cf, out, "reject", args[0], client.RejectRequest{Reason: reason}, nil))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; at most 1000 characters)")
	return cmd
}

// checkID refuses an ID argument that names no remediation, or that the API's
// paths cannot carry: "." and ".." are path segments a URL resolves away (approve ..
// would POST to /v1/approve), and the generated client does not escape them.
func checkID(id string) error {
	switch {
	case strings.TrimSpace(id) == "":
		return errors.New("ID: empty (autofix review list shows the ids)")
	case id == "." || id == "..":
		return fmt.Errorf("ID %q: a path segment of its own, which this command cannot send as an id", id)
	}
	return nil
}

// runReviewDecision approves or rejects remediation id with the request body req,
// and prints what became of it.
func runReviewDecision(cmd *cobra.Command, cf *connFlags, out *outputFlags, verb, id string, req any, option *int) error {
	mode, err := out.mode()
	if err != nil {
		return err
	}
	if err := checkID(id); err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	c, err := cf.dial(cmd)
	if err != nil {
		return err
	}
	op := verb + " " + sanitizeLine(id)
	a, err := c.call(cmd.Context(), op, func(ctx context.Context) (*http.Response, error) {
		if verb == "approve" {
			return c.api.ApproveRemediationWithBody(ctx, id, "application/json", bytes.NewReader(body))
		}
		return c.api.RejectRemediationWithBody(ctx, id, "application/json", bytes.NewReader(body))
	})
	if err != nil {
		return err
	}
	return printRemediation(cmd, c, mode, a.body, func(v *client.RemediationView) error {
		return writeDecision(cmd.OutOrStdout(), verb, v, option)
	})
}

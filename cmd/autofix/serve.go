package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/service"
)

func newServeCmd() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the autofix loop: Kafka -> ledger -> classifier -> recommender -> policy -> remediator",
		Long: `Serve consumes FailureEvents from Kafka, records each one and every decision about
it in the ledger, and submits the fixes the policy approves.

With no flags it needs nothing else: it starts an embedded Kafka-protocol broker on
127.0.0.1:9092, keeps the ledger in SQLite under ./autofix-data, and acts on a
simulated cluster in the process (kept in ./autofix-data/cluster.json) with a demo
workload: jobs that run out of memory and GPU memory, an evicted one, one with a bug,
and a train -> compress -> deploy pipeline. Read what it did with "autofix ledger".
With --kubeconfig it watches and acts on a real cluster; with --kubeconfig none on no
cluster at all, recording the jobs it would submit in ./autofix-data/submissions.jsonl.

Configuration: defaults, then --config FILE (YAML), then AUTOFIX_* environment
variables, then flags. /healthz and /readyz are served on --http-addr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(cmd)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), &cfg, newLogger(cmd.ErrOrStderr(), &cfg.Log))
		},
	}
	cf.register(cmd, "data-dir", "http-addr", "embedded-kafka-addr", "kafka-brokers", "db", "dry-run", "log-level", "kubeconfig", "metrics-url")
	cmd.Flags().Lookup("kubeconfig").Usage = `kubeconfig of the cluster to watch and act on ("in-cluster" in a pod; "none": no cluster, submissions recorded; default: the simulated cluster)`
	return cmd
}

func newLogger(w io.Writer, c *config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the service until ctx is cancelled.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	s, err := service.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

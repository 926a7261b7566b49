package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/remediate"
)

// ledgerChains answers the driver from the ledger (pipeline.Chains).
type ledgerChains struct{ store *ledger.Store }

func (l ledgerChains) FailureState(ctx context.Context, job *batchv1.Job) (string, string, error) {
	// The Job's failure, or else its pods' failing to start.
	for _, id := range []string{remediate.JobEventID(job), remediate.StuckEventID(job)} {
		r, err := l.store.Get(ctx, id)
		if errors.Is(err, ledger.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", "", err
		}
		return string(r.State), r.Reason, nil
	}
	return "", "", nil
}

func newPipelineCmd() *cobra.Command {
	var kubeconfig, dataDir, db, run, configFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Run ML pipelines (train -> compress -> deploy) on Kubernetes, remediating failed stages",
	}
	driver := func(cmd *cobra.Command) (*pipeline.Driver, func(), error) {
		if kubeconfig == "" {
			return nil, nil, fmt.Errorf("--kubeconfig: required (a file, or in-cluster)")
		}
		kube, err := kubeClient(&config.Kubernetes{Kubeconfig: kubeconfig})
		if err != nil {
			return nil, nil, err
		}
		// The pod policy is serve's: the same file, so that the command refuses
		// what the service would.
		cfg, err := config.Load(configFile, os.LookupEnv)
		if err != nil {
			return nil, nil, err
		}
		if err := cfg.Policy.Pods.Validate(); err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
		store, err := openLedgerAt(cmd.Context(), dataDir, db)
		if err != nil {
			return nil, nil, err
		}
		return &pipeline.Driver{Client: kube, Chains: ledgerChains{store}, Pods: cfg.Policy.Pods,
				Log: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))},
			func() { _ = store.Close() }, nil
	}
	load := func(path string) (*pipeline.Definition, error) {
		data, err := os.ReadFile(path) // #nosec G304 -- the operator names the file
		if err != nil {
			return nil, err
		}
		return pipeline.Parse(data)
	}
	runCmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run (or resume) a pipeline to its end; prints the final status as JSON",
		Long: `Run creates each stage when its input is ready and follows it to its end. A failed
Job stage is remediated by "autofix serve" (which must be running against the same
cluster and ledger) and the driver follows the new attempts; the deploy stage runs a
canary first and rolls back an unhealthy rollout. Run again with the same --run to
resume after an interruption: nothing is started twice. The exit status is 1 when the
pipeline failed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			def, err := load(args[0])
			if err != nil {
				return err
			}
			d, closeLedger, err := driver(cmd)
			if err != nil {
				return err
			}
			defer closeLedger()
			if run == "" {
				run = fmt.Sprintf("r%x", time.Now().Unix()%0xffffff)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			st, err := d.Run(ctx, def, run)
			_ = json.NewEncoder(cmd.OutOrStdout()).Encode(st)
			if err != nil {
				return err
			}
			if st.Phase == pipeline.Failed {
				return exitError(1)
			}
			return nil
		},
	}
	statusCmd := &cobra.Command{
		Use:   "status FILE --run ID",
		Short: "Where a run stands, from the cluster and the ledger (changes nothing)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			def, err := load(args[0])
			if err != nil {
				return err
			}
			if run == "" {
				return fmt.Errorf("--run: required")
			}
			d, closeLedger, err := driver(cmd)
			if err != nil {
				return err
			}
			defer closeLedger()
			d.Observe = true
			st, err := d.Step(cmd.Context(), def, run)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(st)
		},
	}
	var namespace string
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "The pipeline runs in a namespace, from the labels of their Jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kube, err := kubeClient(&config.Kubernetes{Kubeconfig: kubeconfig})
			if err != nil {
				return err
			}
			jobs, err := kube.BatchV1().Jobs(namespace).List(cmd.Context(), metav1.ListOptions{LabelSelector: remediate.LabelPipeline})
			if err != nil {
				return err
			}
			runs := map[string][]string{}
			for _, j := range jobs.Items {
				key := j.Labels[remediate.LabelPipeline] + " " + j.Labels[pipeline.LabelRun]
				runs[key] = append(runs[key], j.Labels[remediate.LabelStage]+"="+j.Name)
			}
			keys := make([]string, 0, len(runs))
			for k := range runs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", k, strings.Join(runs[k], " "))
			}
			return nil
		},
	}
	d := config.Default()
	for _, c := range []*cobra.Command{runCmd, statusCmd, listCmd} {
		c.Flags().StringVar(&kubeconfig, "kubeconfig", "", `kubeconfig of the cluster ("in-cluster" in a pod)`)
		cmd.AddCommand(c)
	}
	for _, c := range []*cobra.Command{runCmd, statusCmd} {
		c.Flags().StringVar(&dataDir, "data-dir", d.DataDir, "data directory of the SQLite ledger serve uses")
		c.Flags().StringVar(&db, "db", "", "PostgreSQL URL of the ledger")
		c.Flags().StringVar(&run, "run", "", "run id (default for run: a new one)")
	}
	runCmd.Flags().DurationVar(&timeout, "timeout", 6*time.Hour, "give up after this long")
	runCmd.Flags().StringVar(&configFile, "config", "", "serve's YAML configuration file, for its pod policy (policy.pods)")
	listCmd.Flags().StringVar(&namespace, "namespace", "", "namespace (default: all)")
	return cmd
}

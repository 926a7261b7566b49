package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/service"
)

func newPipelineCmd() *cobra.Command {
	var cf configFlags
	var run, namespace string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Run ML pipelines (train -> compress -> deploy) on Kubernetes, remediating failed stages",
	}
	// cluster is serve's cluster, from its configuration.
	cluster := func(cmd *cobra.Command) (kubernetes.Interface, config.Config, error) {
		cfg, err := cf.load(cmd)
		if err != nil {
			return nil, cfg, err
		}
		if k := cfg.Kubernetes.Kubeconfig; k == "" || k == config.NoCluster {
			return nil, cfg, fmt.Errorf("--kubeconfig: required (a file, or in-cluster)")
		}
		kube, err := service.KubeClient(&cfg.Kubernetes)
		return kube, cfg, err
	}
	driver := func(cmd *cobra.Command) (*pipeline.Driver, func(), error) {
		// The pod policy is serve's, so that the command refuses what the service would.
		kube, cfg, err := cluster(cmd)
		if err != nil {
			return nil, nil, err
		}
		store, err := cf.openLedger(cmd)
		if err != nil {
			return nil, nil, err
		}
		d, err := service.PipelineDriver(&cfg, kube, service.LedgerChains(store), slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)))
		if err != nil {
			_ = store.Close()
			return nil, nil, err
		}
		return d, func() { _ = store.Close() }, nil
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
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "The pipeline runs in a namespace, from the labels of their Jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kube, _, err := cluster(cmd)
			if err != nil {
				return err
			}
			jobs, err := kube.BatchV1().Jobs(namespace).List(cmd.Context(), metav1.ListOptions{LabelSelector: failure.LabelPipeline})
			if err != nil {
				return err
			}
			runs := map[string][]string{}
			for _, j := range jobs.Items {
				key := j.Labels[failure.LabelPipeline] + " " + j.Labels[pipeline.LabelRun]
				runs[key] = append(runs[key], j.Labels[failure.LabelStage]+"="+j.Name)
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
	cf.register(runCmd, "kubeconfig", "data-dir", "db")
	cf.register(statusCmd, "kubeconfig", "data-dir", "db")
	cf.register(listCmd, "kubeconfig")
	for _, c := range []*cobra.Command{runCmd, statusCmd, listCmd} {
		cmd.AddCommand(c)
	}
	for _, c := range []*cobra.Command{runCmd, statusCmd} {
		c.Flags().StringVar(&run, "run", "", "run id (default for run: a new one)")
	}
	runCmd.Flags().DurationVar(&timeout, "timeout", 6*time.Hour, "give up after this long")
	listCmd.Flags().StringVar(&namespace, "namespace", "", "namespace (default: all)")
	return cmd
}

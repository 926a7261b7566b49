package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/service"
)

func newWatchCmd() *cobra.Command {
	var kf kafkaFlags
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Publish the failures of a cluster's workloads, pods and rollouts to Kafka, without acting",
		Long: `Watch runs the failure watchers on their own: every failed Job (and every pod that cannot
start, every stuck or crash-looping rollout) in --namespaces matching --selector
becomes a FailureEvent on --topic, once per Job (its id is the Job's uid); so does
every failed workload of the other kinds kubernetes.kinds enables (a JobSet: once per
JobSet, from the pod that failed first). serve runs the same watchers on its leader; watch is for a cluster whose failures another autofix
decides on, or to see what autofix would see. It does not submit anything. With
--config it connects to Kafka as serve does (kafka.brokers, kafka.tls, kafka.sasl),
and reads the peaks of runs from Prometheus as serve does (metrics; --metrics-url).

The events carry the tail of each failed container's log (up to 64 KiB): whoever
can read the topic reads those logs, and whatever secrets a job prints in them.
Protect the topic as the logs are protected (TLS, SASL and ACLs on the brokers).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			to, cfg, err := kf.target(cmd)
			if err != nil {
				return err
			}
			k := &cfg.Kubernetes
			if k.Kubeconfig == "" || k.Kubeconfig == config.NoCluster {
				return fmt.Errorf("--kubeconfig: required (a file, or in-cluster)")
			}
			kube, err := service.KubeClient(k)
			if err != nil {
				return err
			}
			p, err := ingest.NewProducer(ingest.ProducerOptions{Brokers: to.brokers, Security: to.sec, Topic: to.topic})
			if err != nil {
				return err
			}
			defer func() { _ = p.Close() }()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			usage, err := service.UsageSource(&cfg.Metrics, log)
			if err != nil {
				return err
			}
			return service.Watch(cmd.Context(), &cfg, kube, service.KafkaPublisher(p), usage, log)
		},
	}
	kf.register(cmd, "topic to publish failures to (default: the configuration's)", "kubeconfig", "namespaces", "selector", "pending-grace",
		"metrics-url")
	return cmd
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/policy"
	"github.com/autofix/autofix/recommender"
	"github.com/autofix/autofix/remediate"
	"github.com/autofix/autofix/review"
	"github.com/autofix/autofix/simcluster"
)

type serveFlags struct {
	config, dataDir, httpAddr, embeddedAddr, brokers, db, logLevel, kubeconfig string
	dryRun                                                                     bool
}

func newServeCmd() *cobra.Command {
	var f serveFlags
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
			cfg, err := config.Load(f.config, os.LookupEnv)
			if err != nil {
				return err
			}
			fl := cmd.Flags()
			set := func(name string, apply func()) {
				if fl.Changed(name) {
					apply()
				}
			}
			set("data-dir", func() { cfg.DataDir = f.dataDir })
			set("http-addr", func() { cfg.HTTP.Addr = f.httpAddr })
			set("embedded-kafka-addr", func() { cfg.Kafka.EmbeddedAddr = f.embeddedAddr })
			set("kafka-brokers", func() { cfg.Kafka.Brokers = config.SplitList(f.brokers) })
			set("db", func() { cfg.DB = f.db })
			set("dry-run", func() { cfg.Policy.DryRun = f.dryRun })
			set("log-level", func() { cfg.Log.Level = f.logLevel })
			set("kubeconfig", func() { cfg.Kubernetes.Kubeconfig = f.kubeconfig })
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("config: %w", err)
			}
			return serve(cmd.Context(), &cfg, newLogger(cmd.ErrOrStderr(), &cfg.Log))
		},
	}
	d := config.Default()
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML configuration file")
	fl.StringVar(&f.dataDir, "data-dir", d.DataDir, "directory for the SQLite ledger, the embedded broker's log and recorded submissions")
	fl.StringVar(&f.httpAddr, "http-addr", d.HTTP.Addr, "address of the HTTP listener (/healthz, /readyz)")
	fl.StringVar(&f.embeddedAddr, "embedded-kafka-addr", d.Kafka.EmbeddedAddr, "address of the embedded broker (used when no --kafka-brokers)")
	fl.StringVar(&f.brokers, "kafka-brokers", "", "comma-separated brokers of an external Kafka cluster")
	fl.StringVar(&f.db, "db", "", "PostgreSQL URL for the ledger (default: SQLite in the data directory)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "decide and record everything, submit nothing")
	fl.StringVar(&f.logLevel, "log-level", d.Log.Level, "debug, info, warn or error")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", `kubeconfig of the cluster to watch and act on ("in-cluster" in a pod; "none": no cluster, submissions recorded; default: the simulated cluster)`)
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

// serve runs the loop until ctx is cancelled.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	brokers := cfg.Kafka.Brokers
	sec, err := kafkaSecurity(&cfg.Kafka) // plaintext for the embedded broker: Validate saw to it
	if err != nil {
		return err
	}
	if len(brokers) > 0 {
		log.Info("kafka connections", "tls", sec.TLS != nil, "sasl", cfg.Kafka.SASL.Mechanism, "user", cfg.Kafka.SASL.Username)
	}
	if len(brokers) == 0 {
		b, err := ingest.StartBroker(ingest.BrokerOptions{Addr: cfg.Kafka.EmbeddedAddr, DataDir: filepath.Join(cfg.DataDir, "kafka")})
		if err != nil {
			return err
		}
		defer b.Close()
		brokers = []string{b.Addr()}
		log.Info("embedded kafka broker started", "addr", b.Addr())
	}
	store, err := ledger.Open(ctx, cfg.LedgerDSN())
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	log.Info("ledger open", "backend", store.Backend())

	var (
		remediator engine.Remediator
		kube       kubernetes.Interface
		gpuTypes   []string
		simulated  *simcluster.Cluster
		wg         sync.WaitGroup
	)
	switch cfg.Kubernetes.Kubeconfig {
	case config.NoCluster:
		rec, err := engine.OpenRecording(filepath.Join(cfg.DataDir, "submissions.jsonl"))
		if err != nil {
			return err
		}
		defer func() { _ = rec.Close() }()
		remediator = rec
	case "":
		if simulated, err = newSimulatedCluster(cfg, log); err != nil {
			return err
		}
		kube = simulated.Client()
		simCtx, stopSim := context.WithCancel(context.WithoutCancel(ctx))
		simDone := make(chan struct{})
		go func() {
			defer close(simDone)
			if err := simulated.Run(simCtx); err != nil {
				log.Error("simulated cluster", "err", err)
			}
		}()
		defer func() { stopSim(); <-simDone }() // after everything that uses it
		log.Info("no cluster configured: running the simulated cluster", "state", filepath.Join(cfg.DataDir, "cluster.json"))
		if reflect.DeepEqual(cfg.Policy.Rules, policy.Default().Rules) {
			cfg.Policy.Rules = append([]policy.Rule{demoRule}, cfg.Policy.Rules...)
			log.Info("demo: fixes in namespace "+demoProdNamespace+" wait for review", "rule", demoRule.Name)
		}
	default:
		if kube, err = kubeClient(&cfg.Kubernetes); err != nil {
			return err
		}
	}
	var verifier *remediate.Verifier
	if kube != nil {
		k := &cfg.Kubernetes
		if verifier, err = remediate.NewVerifier(kube, remediate.VerifierOptions{Namespaces: k.Namespaces, Selector: k.Selector,
			GPUTypeLabel: k.GPUTypeLabel, Specs: ledgerSpecs{store}}); err != nil {
			return fmt.Errorf("kubernetes.selector: %w", err)
		}
		remediator = kubeRemediator{s: remediate.NewSubmitter(kube, remediate.SubmitterOptions{GPUTypeLabel: k.GPUTypeLabel,
			Specs: ledgerSpecs{store}, Pods: cfg.Policy.Pods}), v: verifier}
		if gpuTypes = clusterGPUTypes(ctx, kube, cfg.Kubernetes.GPUTypeLabel); len(gpuTypes) > 0 {
			log.Info("GPU models on the cluster's nodes", "types", gpuTypes)
		}
	}

	br, err := newBrain(cfg.Scenario, gpuTypes, cfg.BackoffSeconds, cfg.Policy.MaxCostMultiple)
	if err != nil {
		return err
	}
	consumer, err := ingest.NewConsumer(ingest.ConsumerOptions{
		Brokers: brokers, Topic: cfg.Kafka.Topic, GroupID: cfg.Kafka.GroupID, DeadLetterTopic: cfg.Kafka.DeadLetterTopic,
		MaxBatch: cfg.Kafka.MaxBatch, SessionTimeout: cfg.Kafka.SessionTimeout, ShutdownGrace: cfg.ShutdownGrace, Logger: log,
		Security: sec,
	})
	if err != nil {
		return err
	}
	metrics := api.NewMetrics()
	metrics.ModelInUse(br.models.Name, br.models.Version)
	if err := metrics.Register(consumerCollector(consumer)); err != nil {
		return err
	}
	intake := &engine.Intake{Ledger: store, Recommender: br.rec, Policy: &cfg.Policy, Log: log, Decided: metrics.Decided}
	if verifier != nil {
		intake.Verifier, intake.VerifyPatience = kubeVerifier{verifier}, cfg.Kubernetes.VerifyPatience
	}
	dispatcher := &engine.Dispatcher{
		Ledger: store, Remediator: remediator, DryRun: cfg.Policy.DryRun, Log: log,
		Limiter: policy.NewLimiter(cfg.Policy.RatePerMinute, cfg.Policy.Burst),
	}
	health := &health{store: store, consumer: consumer, brokers: brokers, security: sec, kube: kube, simulated: simulated != nil}
	authn, err := startAuth(ctx, cfg, kube, log)
	if err != nil {
		return err
	}
	var pipelines *api.Pipelines
	if kube != nil {
		pipelines = &api.Pipelines{Ledger: store, Log: log,
			Driver:   &pipeline.Driver{Client: kube, Chains: ledgerChains{store}, Pods: cfg.Policy.Pods, Log: log},
			Observer: &pipeline.Driver{Client: kube, Chains: ledgerChains{store}, Observe: true}}
	}
	reviews, err := review.New(review.Options{Ledger: store, Policy: &cfg.Policy, Catalogue: br.catalogue,
		Largest: func() failure.Resources { return br.largest }})
	if err != nil {
		return err
	}
	apiServer, err := newAPIServer(cfg, api.Options{
		Ledger: store, Review: reviews, Recommender: br.rec, Classifier: br.classifier, Models: br.models, Pods: cfg.Policy.Pods,
		Auth: authn, Pipelines: pipelines, Metrics: metrics, Ready: health.ready, Log: log,
	})
	if err != nil {
		return err
	}
	srv := apiServer.HTTPServer(cfg.HTTP.Addr)
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	log.Info("autofix serving", "http", ln.Addr().String(), "tls", cfg.HTTP.TLS.Enabled(), "kafka", brokers, "topic", cfg.Kafka.Topic,
		"dlq", cfg.Kafka.DeadLetterTopic, "dryRun", cfg.Policy.DryRun)

	wg.Go(func() {
		if err := apiServer.Serve(srv, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	})
	wg.Go(func() { refreshGauges(ctx, store, metrics) })
	wg.Go(func() { health.probe(ctx, log) })
	// What acts on the cluster — the dispatcher, the watcher that reports failures and
	// outcomes, the pipeline runs — runs on the leader only, and stops the moment the
	// lease is lost.
	act := func(ctx context.Context) {
		var acting sync.WaitGroup
		acting.Go(func() {
			if err := dispatcher.Run(ctx); err != nil {
				log.Error("dispatcher", "err", err)
			}
		})
		acting.Go(func() { pruneLedger(ctx, store, cfg.Retention, log) })
		if kube != nil {
			acting.Go(func() { runWatcher(ctx, cfg, kube, brokers, sec, store, metrics, log) })
			acting.Go(func() { pipelines.Run(ctx) })
		}
		if simulated != nil {
			acting.Go(func() {
				if err := seedDemo(ctx, kube, pipelines, log); err != nil {
					log.Error("demo", "err", err)
				}
			})
		}
		acting.Wait()
	}
	if kube != nil && simulated == nil { // the simulated cluster lives in this process: no one to elect
		wg.Go(func() {
			remediate.Lead(ctx, kube, remediate.LeaderOptions{Namespace: cfg.Kubernetes.LeaseNamespace,
				Name: cfg.Kubernetes.LeaseName, Identity: identity(&cfg.Kubernetes), Log: log}, act)
		})
	} else {
		wg.Go(func() { act(ctx) })
	}
	var consumeErr error
	wg.Go(func() {
		topics := []ingest.Topic{
			{Name: cfg.Kafka.Topic, Partitions: cfg.Kafka.Partitions, Retention: cfg.Kafka.Retention},
			{Name: cfg.Kafka.DeadLetterTopic, Partitions: 1, Retention: cfg.Kafka.Retention},
		}
		if cfg.Kafka.CreateTopics && !untilOK(ctx, log, "create topics", func() error {
			return ingest.EnsureTopics(ctx, brokers, sec, topics...)
		}) {
			return
		}
		health.consuming.Store(true)
		consumeErr = consumer.Run(ctx, intake)
		health.consuming.Store(false)
	})
	<-ctx.Done()
	log.Info("shutting down: finishing in-flight events")
	shutdown, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(cfg.ShutdownGrace + 5*time.Second):
		log.Warn("shutdown grace exceeded: exiting with work in flight (uncommitted, it will be delivered again)")
	}
	st := consumer.Stats()
	log.Info("stopped", "consumed", st.Consumed, "deadLettered", st.DeadLettered, "batches", st.Batches)
	return consumeErr
}

// brain is what decides: the rules, the models, the recommender, and the catalogue
// that prices their options.
type brain struct {
	rec        *recommender.Recommender
	classifier *classifier.Classifier
	models     *models.Models
	catalogue  failure.Catalogue
	largest    failure.Resources // the largest node
}

// newBrain builds the recommender with the embedded rules, models and fallback, and
// the named scenario's cluster limits and prices. With gpuTypes (the models the
// cluster's nodes have), only those GPUs are proposed.
func newBrain(scenario string, gpuTypes []string, backoffSeconds, maxCostMultiple float64) (*brain, error) {
	s, err := loadScenario(scenario)
	if err != nil {
		return nil, err
	}
	var gpus []failure.GPUModel
	for _, g := range s.Catalogue.GPUs {
		if slices.Contains(gpuTypes, g.Name) {
			gpus = append(gpus, g)
		}
	}
	if len(gpus) > 0 {
		s.Catalogue.GPUs = gpus
	}
	c, err := loadClassifier("", 0.5)
	if err != nil {
		return nil, err
	}
	m, err := loadModels("")
	if err != nil {
		return nil, err
	}
	fb, err := models.DefaultFallback()
	if err != nil {
		return nil, err
	}
	// The recommender proposes nothing over the policy's cost cap, which no fix may
	// pass, reviewed or not.
	rec := recommenderFor(s, c, m, fb, func(o *recommender.Options) {
		o.BackoffSeconds, o.MaxCostMultiple = backoffSeconds, maxCostMultiple
	})
	largest := failure.Resources{MemoryBytes: int64(s.Cluster.MaxMemoryGiB * (1 << 30)), CPUMillis: int64(s.Cluster.MaxCPU * 1000),
		GPU: s.Cluster.MaxGPUs, EphemeralStorageBytes: int64(s.Cluster.MaxEphemeralGiB * (1 << 30))}
	return &brain{rec: rec, classifier: c, models: m, catalogue: s.Catalogue, largest: largest}, nil
}

// untilOK runs fn until it succeeds or ctx ends, backing off up to 5 s between tries.
func untilOK(ctx context.Context, log *slog.Logger, what string, fn func() error) bool {
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return true
		}
		log.Warn(what+" failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// health answers /healthz (the process is up) and /readyz (it can do its work).
type health struct {
	store      *ledger.Store
	consumer   *ingest.Consumer
	brokers    []string
	security   ingest.Security
	kube       kubernetes.Interface
	simulated  bool
	consuming  atomic.Bool
	kafkaErr   atomic.Pointer[string]
	clusterErr atomic.Pointer[string]
}

// probe checks the brokers every 2 s.
func (h *health) probe(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		msg := ""
		if err := ingest.Reachable(ctx, h.brokers, h.security, 2*time.Second); err != nil {
			msg = err.Error()
		}
		if old := h.kafkaErr.Swap(&msg); (old == nil || *old == "") != (msg == "") {
			if msg != "" {
				log.Warn("kafka unreachable", "err", msg)
			} else {
				log.Info("kafka reachable")
			}
		}
		if h.kube != nil && !h.simulated {
			cmsg := ""
			vctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if err := h.kube.Discovery().RESTClient().Get().AbsPath("/version").Do(vctx).Error(); err != nil {
				cmsg = err.Error()
			}
			cancel()
			if old := h.clusterErr.Swap(&cmsg); (old == nil || *old == "") != (cmsg == "") && cmsg != "" {
				log.Warn("cluster unreachable", "err", cmsg)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ready answers /readyz: the broker, the ledger, the consumer and the cluster. The
// details (errors' texts) are shown only to callers with a token.
func (h *health) ready(ctx context.Context) (bool, map[string]api.Check) {
	ok := api.Check{State: api.CheckOK, Detail: "ok"}
	failing := func(detail string) api.Check { return api.Check{State: api.CheckFailing, Detail: detail} }
	notReady := func(detail string) api.Check { return api.Check{State: api.CheckNotReady, Detail: detail} }
	checks := map[string]api.Check{"kafka": ok, "ledger": ok, "consumer": ok, "cluster": ok}
	if p := h.kafkaErr.Load(); p == nil {
		checks["kafka"] = notReady("not checked yet")
	} else if *p != "" {
		checks["kafka"] = failing(*p)
	}
	if err := h.store.Ping(ctx); err != nil {
		checks["ledger"] = failing(err.Error())
	}
	switch {
	case !h.consuming.Load():
		checks["consumer"] = notReady("not consuming")
	case h.consumer.Stalled():
		checks["consumer"] = failing("failing to record events; retrying")
	case h.consumer.FetchError() != "":
		checks["consumer"] = failing("fetch failing: " + h.consumer.FetchError())
	}
	switch p := h.clusterErr.Load(); {
	case h.kube == nil:
		checks["cluster"] = api.Check{State: api.CheckOK, Detail: "none (shadow mode)"}
	case h.simulated:
		checks["cluster"] = api.Check{State: api.CheckOK, Detail: "ok (simulated)"}
	case p == nil:
		checks["cluster"] = notReady("not checked yet")
	case *p != "":
		checks["cluster"] = failing(*p)
	}
	ready := true
	for _, c := range checks {
		ready = ready && c.State == api.CheckOK
	}
	return ready, checks
}

// runWatcher publishes the cluster's failures (with their containers' log tails) to
// the failures topic and records how autofix's attempts end, until ctx ends.
func runWatcher(ctx context.Context, cfg *config.Config, kube kubernetes.Interface, brokers []string, sec ingest.Security,
	store *ledger.Store, metrics *api.Metrics, log *slog.Logger) {
	p, err := ingest.NewProducer(ingest.ProducerOptions{Brokers: brokers, Security: sec, Topic: cfg.Kafka.Topic})
	if err != nil {
		log.Error("watcher", "err", err)
		return
	}
	defer func() { _ = p.Close() }()
	k := &cfg.Kubernetes
	w := remediate.NewWatcher(kube, kafkaPublisher{p}, ledgerSink{store, metrics}, remediate.WatcherOptions{
		Namespaces: k.Namespaces, Selector: k.Selector, PendingGrace: k.PendingGrace, GPUTypeLabel: k.GPUTypeLabel,
		Specs: ledgerSpecs{store}, Log: log})
	if err := w.Run(ctx); err != nil {
		log.Error("watcher", "err", err)
	}
}

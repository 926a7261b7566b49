// Package service assembles autofix serve: it builds every part from one
// configuration (New), runs them (Run) and stops them in order (Stop). It owns every
// goroutine the service starts: all of them end before Run returns, unless they
// outlast shutdownGrace (and 5 s more): then Run returns with them abandoned, and the
// process is expected to exit (what they had not committed is delivered again).
//
// What it runs: the Kafka consumer that decides events (engine.Intake) on every
// replica; the HTTP API; readiness probes; the token reload; node discovery; and, on
// the leader only, what acts on the cluster — the dispatcher, the watcher, the
// pipeline supervisor, retention — and the review alerts to Alertmanager. It holds
// no domain logic: the packages it wires do.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	jobsetclient "sigs.k8s.io/jobset/client-go/clientset/versioned"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/autonomy"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/notify"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/policy"
	"github.com/autofix/autofix/registry"
	"github.com/autofix/autofix/remediate"
	"github.com/autofix/autofix/review"
	"github.com/autofix/autofix/simcluster"
)

// Service is autofix serve, built.
type Service struct {
	cfg *config.Config
	log *slog.Logger

	closers []func() // in the order they are to run, after every goroutine has ended

	brokers    []string
	sec        ingest.Security
	store      *ledger.Store
	kube       kubernetes.Interface
	simulated  *simcluster.Cluster
	usage      remediate.UsageSource // nil: no peaks
	brain      *brain
	registry   *registry.Registry
	consumer   *ingest.Consumer
	intake     *engine.Intake
	dispatcher *engine.Dispatcher
	metrics    *api.Metrics
	health     *health
	tokens     *tokenSources
	authn      *auth.Authenticator
	pipelines  *pipeline.Supervisor
	apiServer  *api.Server
	srv        *http.Server
	ln         net.Listener
	election   *remediate.LeaderStatus
	jobsets    jobsetclient.Interface // nil unless kubernetes.kinds names JobSet
	kueue      *remediate.Kueue       // nil unless kubernetes.kueue is enabled
	autonomy   *autonomy.Service
	notifier   *notify.Notifier // nil without notify.alertmanager.urls
	webhooks   *notify.Webhooks // nil without notify.webhooks

	stopOnce  sync.Once
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
	mu        sync.Mutex // Run and Stop may be called from different goroutines
	ran       bool       // Run has begun
	stopped   bool       // Stop has been called
}

// New builds the service from cfg (validated): it starts the embedded broker if no
// brokers are configured, opens the ledger, connects to the cluster (or starts the
// simulated one, or records submissions in shadow mode), loads the rules and models,
// the API tokens, and listens on http.addr. Nothing is consumed or acted on until
// Run. On an error, what was opened is closed again.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *Service, err error) {
	s := &Service{cfg: cfg, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	defer func() {
		if err != nil {
			s.close() // what was opened before the error
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if s.sec, err = KafkaSecurity(&cfg.Kafka); err != nil { // plaintext for the embedded broker: Validate saw to it
		return nil, err
	}
	s.brokers = cfg.Kafka.Brokers
	if len(s.brokers) > 0 {
		log.Info("kafka connections", "tls", s.sec.TLS != nil, "sasl", cfg.Kafka.SASL.Mechanism, "user", cfg.Kafka.SASL.Username)
	} else {
		b, err := ingest.StartBroker(ingest.BrokerOptions{Addr: cfg.Kafka.EmbeddedAddr, DataDir: filepath.Join(cfg.DataDir, "kafka")})
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, b.Close)
		s.brokers = []string{b.Addr()}
		log.Info("embedded kafka broker started", "addr", b.Addr())
	}
	if s.store, err = ledger.Open(ctx, cfg.LedgerDSN()); err != nil {
		return nil, err
	}
	s.closers = append([]func(){func() { _ = s.store.Close() }}, s.closers...) // the ledger last
	log.Info("ledger open", "backend", s.store.Backend())

	remediator, err := s.connect()
	if err != nil {
		return nil, err
	}
	if err := s.connectMetrics(); err != nil {
		return nil, err
	}
	if s.brain, err = newBrain(cfg); err != nil {
		return nil, err
	}
	if err := s.openRegistry(ctx); err != nil {
		return nil, err
	}
	if err := s.assemble(ctx, remediator); err != nil {
		return nil, err
	}
	return s, nil
}

// connect sets up the cluster: none (shadow mode), the simulated one, or the
// configured one, and returns what submits fixes to it.
func (s *Service) connect() (engine.Remediator, error) {
	cfg, log := s.cfg, s.log
	switch cfg.Kubernetes.Kubeconfig {
	case config.NoCluster:
		rec, err := engine.OpenRecording(filepath.Join(cfg.DataDir, "submissions.jsonl"))
		if err != nil {
			return nil, err
		}
		s.closers = append([]func(){func() { _ = rec.Close() }}, s.closers...)
		return rec, nil
	case "":
		var err error
		if s.simulated, err = newSimulatedCluster(cfg, log); err != nil {
			return nil, err
		}
		s.kube = s.simulated.Client()
		log.Info("no cluster configured: running the simulated cluster", "state", filepath.Join(cfg.DataDir, "cluster.json"))
		if reflect.DeepEqual(cfg.Policy.Rules, policy.Default().Rules) {
			cfg.Policy.Rules = append([]policy.Rule{demoRule}, cfg.Policy.Rules...)
			log.Info("demo: fixes in namespace "+demoProdNamespace+" wait for review", "rule", demoRule.Name)
		}
	default:
		var err error
		if s.kube, err = KubeClient(&cfg.Kubernetes); err != nil {
			return nil, err
		}
		s.election = remediate.NewLeaderStatus(identity(&cfg.Kubernetes))
	}
	if cfg.Kubernetes.Enabled(config.KindJobSet) {
		var err error
		if s.jobsets, err = JobSetClient(&cfg.Kubernetes); err != nil {
			return nil, err
		}
	}
	if cfg.Kubernetes.Kueue.Enabled {
		var err error
		if s.kueue, err = KueueReader(&cfg.Kubernetes); err != nil {
			return nil, err
		}
	}
	kinds, err := adapters(cfg, s.kube, s.jobsets, s.kueue, ledgerSpecs{s.store}, nil, log)
	if err != nil {
		return nil, err
	}
	s.intake = &engine.Intake{Verifier: kubeVerifier{kinds}, VerifyPatience: cfg.Kubernetes.VerifyPatience}
	return kubeRemediator{kinds}, nil
}

// connectMetrics sets up where the watcher reads the peaks of runs: metrics.url,
// or, with none, the simulated cluster's own series when it runs.
func (s *Service) connectMetrics() error {
	m := s.cfg.Metrics
	if m.URL == "" && s.simulated != nil {
		addr, stop, err := s.serveSimulatedMetrics()
		if err != nil {
			return err
		}
		s.closers = append([]func(){stop}, s.closers...)
		m.URL = addr
		s.log.Info("the simulated cluster serves its pods' series as Prometheus would", "url", addr)
	}
	var err error
	s.usage, err = UsageSource(&m, s.log)
	if err == nil && s.usage == nil && s.kube != nil {
		s.log.Info("no metrics.url: runs are reported without usage peaks")
	}
	return err
}

// assemble builds the consumer, the engine, the API and its listener.
func (s *Service) assemble(ctx context.Context, remediator engine.Remediator) error {
	cfg, log := s.cfg, s.log
	var err error
	s.consumer, err = ingest.NewConsumer(ingest.ConsumerOptions{
		Brokers: s.brokers, Topic: cfg.Kafka.Topic, GroupID: cfg.Kafka.GroupID, DeadLetterTopic: cfg.Kafka.DeadLetterTopic,
		MaxBatch: cfg.Kafka.MaxBatch, SessionTimeout: cfg.Kafka.SessionTimeout, ShutdownGrace: cfg.ShutdownGrace, Logger: log,
		Security: s.sec,
	})
	if err != nil {
		return err
	}
	s.metrics = api.NewMetrics()
	in := s.registry.InUse()
	s.metrics.ModelInUse(in.Models.Name, in.Version)
	if err := s.metrics.Register(consumerCollector(s.consumer)); err != nil {
		return err
	}
	if s.notifier, err = newNotifier(cfg, s.store, log); err != nil {
		return err
	}
	if s.notifier != nil {
		if err := s.metrics.Register(s.notifier); err != nil {
			return err
		}
	}
	if s.webhooks, err = newWebhooks(cfg, s.store, log); err != nil {
		return err
	}
	if s.webhooks != nil {
		if err := s.metrics.Register(s.webhooks); err != nil {
			return err
		}
	}
	if err := s.assembleAutonomy(ctx); err != nil {
		return err
	}
	if s.intake == nil {
		s.intake = &engine.Intake{}
	}
	s.intake.Grants = s.autonomy.Grants()
	// A kind of fix names the workload's API kind: a grant earned by Jobs does not
	// apply to a JobSet of the same template.
	s.intake.Workload = remediate.EventKind
	s.dispatcher = &engine.Dispatcher{
		Ledger: s.store, Remediator: remediator, DryRun: cfg.Policy.DryRun, Log: log,
		Limiter: policy.NewLimiter(cfg.Policy.RatePerMinute, cfg.Policy.Burst),
	}
	// A fix approved here is submitted at once, not at the dispatcher's next poll
	// (which stays, for approvals made on other replicas).
	s.intake.Ledger, s.intake.Recommender, s.intake.Policy, s.intake.Log = s.store, s.brain.rec, &cfg.Policy, log
	s.intake.Decided = func(e *ledger.Entry, latency time.Duration) {
		s.metrics.Decided(e, latency)
		switch e.State {
		case ledger.Approved:
			s.dispatcher.Wake()
		case ledger.PendingReview:
			s.wakeNotifier()
		}
	}
	s.health = &health{store: s.store, consumer: s.consumer, brokers: s.brokers, security: s.sec, kube: s.kube,
		simulated: s.simulated != nil, election: s.election}
	if s.authn, s.tokens, err = loadAuth(ctx, cfg, s.kube, log); err != nil {
		return err
	}
	if s.kube != nil {
		driver, err := PipelineDriver(cfg, s.kube, LedgerChains(s.store), log)
		if err != nil {
			return err
		}
		observer := *driver
		observer.Observe, observer.Log = true, nil
		s.pipelines = &pipeline.Supervisor{Runs: s.store, Log: log, Driver: driver, Observer: &observer}
	}
	// Reviewers' edits are held to the nodes as discovery finds them, like the
	// recommender's options.
	reviews, err := review.New(review.Options{Ledger: s.store, Policy: &cfg.Policy, Catalogue: cfg.Catalogue,
		Largest: func() failure.Resources { return s.brain.rec.Cluster().Largest }})
	if err != nil {
		return err
	}
	s.apiServer, err = newAPIServer(cfg, api.Options{
		Ledger: s.store, Review: wakingReviewer{reviews, s.dispatcher, s.wakeNotifier}, Recommender: s.brain.rec, Classifier: s.brain.classifier, Models: s.brain.models,
		ModelRegistry: s.registry, Autonomy: s.autonomy,
		Pods: cfg.Policy.Pods, Auth: s.authn, Pipelines: s.pipelines, Metrics: s.metrics, Ready: s.health.ready, Log: log,
	})
	if err != nil {
		return err
	}
	s.srv = s.apiServer.HTTPServer(cfg.HTTP.Addr)
	if s.ln, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	s.closers = append([]func(){func() { _ = s.ln.Close() }}, s.closers...)
	return nil
}

// wakingReviewer wakes the dispatcher when a person approves a fix, and the
// notifier when a person decides one.
type wakingReviewer struct {
	*review.Service
	d       *engine.Dispatcher
	decided func()
}

func (w wakingReviewer) Approve(ctx context.Context, id, who string, c review.Choice) (ledger.Attempt, error) {
	a, err := w.Service.Approve(ctx, id, who, c)
	if err == nil {
		w.d.Wake()
		w.decided()
	}
	return a, err
}

// Addr is the HTTP listener's address.
func (s *Service) Addr() net.Addr { return s.ln.Addr() }

// Run runs the service until ctx ends, Stop is called, or a part fails for good
// (the consumer, the HTTP server); then it stops everything in order — the HTTP
// server first, then the consumer finishes its in-flight batch, the leader's work
// and the rest end — and closes what New opened. It returns the first failure, or
// nil. Work still running after shutdownGrace (and 5 s more) is abandoned: its
// uncommitted events are delivered again.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.ran:
		s.mu.Unlock()
		return errors.New("service: Run called twice")
	case s.stopped:
		s.mu.Unlock()
		return ErrStopped
	}
	s.ran = true
	s.mu.Unlock()
	defer close(s.done)
	cfg, log := s.cfg, s.log
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // Stop ends the run like ctx does
		select {
		case <-s.stop:
			cancel()
		case <-runCtx.Done():
		}
	}()
	// The simulated cluster outlives everything that uses it.
	simDone := make(chan struct{})
	simCtx, stopSim := context.WithCancel(context.WithoutCancel(ctx))
	if s.simulated != nil {
		go func() {
			defer close(simDone)
			if err := s.simulated.Run(simCtx); err != nil {
				log.Error("simulated cluster", "err", err)
			}
		}()
	} else {
		close(simDone)
	}
	defer func() { stopSim(); <-simDone; s.close() }()

	log.Info("autofix serving", "http", s.ln.Addr().String(), "tls", cfg.HTTP.TLS.Enabled(), "kafka", s.brokers,
		"topic", cfg.Kafka.Topic, "dlq", cfg.Kafka.DeadLetterTopic, "dryRun", cfg.Policy.DryRun)
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error {
		err := s.apiServer.Serve(s.srv, s.ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error { // the HTTP server stops first, when the run ends
		<-gctx.Done()
		log.Info("shutting down: finishing in-flight events")
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(gctx), cfg.ShutdownGrace)
		defer cancel()
		if err := s.srv.Shutdown(shutdown); err != nil {
			log.Warn("http shutdown", "err", err)
		}
		return nil
	})
	g.Go(func() error { refreshGauges(gctx, s.store, s.metrics); return nil })
	g.Go(func() error { s.health.probe(gctx, log); return nil })
	g.Go(func() error { s.tokens.run(gctx, s.authn); return nil })
	g.Go(func() error { s.registry.Run(gctx, cfg.Models.PollInterval); return nil })
	g.Go(func() error { s.autonomy.RunGrants(gctx); return nil })
	if s.kube != nil && cfg.Cluster.Discover {
		g.Go(func() error {
			err := remediate.DiscoverNodes(gctx, s.kube, func(o remediate.Offer) { s.brain.offer(o, &cfg.Cluster, cfg.Catalogue, log) },
				remediate.NodeOptions{GPUTypeLabel: cfg.Kubernetes.GPUTypeLabel, Log: log})
			if err != nil && gctx.Err() == nil {
				log.Error("node discovery stopped: the configured cluster.largestNode holds", "err", err)
			}
			return nil
		})
	}
	if s.kueue != nil {
		queues := s.kueue.Quotas(cfg.Kubernetes.Namespaces, log)
		s.brain.rec.SetQueues(queues)
		g.Go(func() error {
			if err := queues.Run(gctx); err != nil && gctx.Err() == nil {
				log.Error("reading Kueue's queues stopped: retries of queued workloads are not held to their quota", "err", err)
			}
			return nil
		})
	}
	if s.election != nil { // the simulated cluster lives in this process: no one to elect
		g.Go(func() error {
			remediate.Lead(gctx, s.kube, remediate.LeaderOptions{Namespace: cfg.Kubernetes.LeaseNamespace,
				Name: cfg.Kubernetes.LeaseName, Identity: identity(&cfg.Kubernetes), Status: s.election, Log: log}, s.act)
			return nil
		})
	} else {
		g.Go(func() error { s.act(gctx); return nil })
	}
	g.Go(func() error {
		topics := []ingest.Topic{
			{Name: cfg.Kafka.Topic, Partitions: cfg.Kafka.Partitions, Retention: cfg.Kafka.Retention},
			{Name: cfg.Kafka.DeadLetterTopic, Partitions: 1, Retention: cfg.Kafka.Retention},
		}
		if cfg.Kafka.CreateTopics && !untilOK(gctx, log, "create topics", func() error {
			return ingest.EnsureTopics(gctx, s.brokers, s.sec, topics...)
		}) {
			return nil
		}
		s.health.consuming.Store(true)
		defer s.health.consuming.Store(false)
		if err := s.consumer.Run(gctx, s.intake); err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
		return nil
	})
	waited := make(chan error, 1)
	go func() { waited <- g.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-runCtx.Done():
		select {
		case err = <-waited:
		case <-time.After(cfg.ShutdownGrace + 5*time.Second):
			log.Warn("shutdown grace exceeded: exiting with work in flight (uncommitted, it will be delivered again)")
			err = errors.New("shutdown grace exceeded: work abandoned in flight")
		}
	}
	st := s.consumer.Stats()
	log.Info("stopped", "consumed", st.Consumed, "deadLettered", st.DeadLettered, "batches", st.Batches)
	return err
}

// act is what acts on the cluster — the dispatcher, the watcher that reports failures
// and outcomes, the pipeline runs, retention — and the review alerts, which run on
// the leader only and stop the moment the lease is lost.
func (s *Service) act(ctx context.Context) {
	var acting sync.WaitGroup
	acting.Go(func() {
		if err := s.dispatcher.Run(ctx); err != nil {
			s.log.Error("dispatcher", "err", err)
		}
	})
	acting.Go(func() { pruneLedger(ctx, s.store, s.cfg.Retention, s.log) })
	acting.Go(func() { s.runNotifier(ctx) })
	acting.Go(func() { s.autonomy.RunChecks(ctx) })
	if s.kube != nil {
		acting.Go(func() { s.runWatcher(ctx) })
		acting.Go(func() { s.pipelines.Run(ctx) })
	}
	if s.simulated != nil {
		acting.Go(func() {
			if err := seedDemo(ctx, s.kube, s.pipelines, s.log); err != nil {
				s.log.Error("demo", "err", err)
			}
		})
	}
	acting.Wait()
}

// Stop ends Run as the end of its context does, and waits for it to return. Called
// before Run, it closes what New opened, and a later Run returns ErrStopped. It may
// be called from any goroutine, more than once.
func (s *Service) Stop() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.mu.Lock()
	ran := s.ran
	s.stopped = true
	s.mu.Unlock()
	if ran {
		<-s.done
		return
	}
	s.close()
}

// close runs the closers, once.
func (s *Service) close() {
	s.closeOnce.Do(func() {
		for _, c := range s.closers {
			c()
		}
	})
}

// runWatcher publishes the cluster's failures (with their containers' log tails) to
// the failures topic and records how autofix's attempts end, until ctx ends.
func (s *Service) runWatcher(ctx context.Context) {
	p, err := ingest.NewProducer(ingest.ProducerOptions{Brokers: s.brokers, Security: s.sec, Topic: s.cfg.Kafka.Topic})
	if err != nil {
		s.log.Error("watcher", "err", err)
		return
	}
	defer func() { _ = p.Close() }()
	// Made afresh with the peaks' source, which is set up after the cluster.
	kinds, err := adapters(s.cfg, s.kube, s.jobsets, s.kueue, ledgerSpecs{s.store}, s.usage, s.log)
	if err != nil {
		s.log.Error("watcher", "err", err)
		return
	}
	sink := ledgerSink{s.store, s.metrics, s.autonomy.Wake}
	var wg sync.WaitGroup
	for _, ad := range kinds.All() {
		wg.Go(func() {
			if err := ad.Watch(ctx, KafkaPublisher(p), sink); err != nil {
				s.log.Error("watcher", "kind", ad.Kind(), "err", err)
			}
		})
	}
	wg.Wait()
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

// ErrStopped is Run's answer after Stop: the service was stopped before it ran.
var ErrStopped = errors.New("service: stopped before Run")

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// Config is everything `autofix serve` runs with.
type Config struct {
	// DataDir holds the SQLite ledger, the embedded broker's log and the recorded
	// submissions.
	DataDir string `yaml:"dataDir"`
	// DB is the ledger: empty for SQLite in DataDir, or a postgres:// URL.
	DB    string `yaml:"db"`
	HTTP  HTTP   `yaml:"http"`
	Kafka Kafka  `yaml:"kafka"`
	// Catalogue prices resources: CPU, memory, local storage and each GPU model (by
	// the value of kubernetes.gpuTypeLabel its nodes carry). The operator's: never
	// discovered. Default: failure.DefaultCatalogue's list prices.
	Catalogue failure.Catalogue `yaml:"catalogue"`
	// Cluster is what the nodes offer: discovered on a cluster, or as configured.
	Cluster Cluster `yaml:"cluster"`
	// Classifier configures the classification of failures.
	Classifier Classifier `yaml:"classifier"`
	// BackoffSeconds is how long a retry of a transient failure (preemption, network,
	// a dependency) waits before it is submitted.
	BackoffSeconds float64       `yaml:"backoffSeconds"`
	Policy         policy.Config `yaml:"policy"`
	// Kubernetes is the cluster autofix watches and acts on; without a kubeconfig
	// (and outside a cluster) serve records the jobs it would submit instead.
	Kubernetes Kubernetes `yaml:"kubernetes"`
	// Metrics is the Prometheus server the peaks of runs are read from.
	Metrics Metrics `yaml:"metrics"`
	Log     Log     `yaml:"log"`
	// ShutdownGrace bounds how long in-flight work may take after SIGTERM.
	ShutdownGrace time.Duration `yaml:"shutdownGrace"`
	// Retention is how long the ledger keeps a remediation that has ended (its
	// event, audit trail, attempts and outcome); one that has not ended is kept
	// until it does. Default 90 days.
	Retention time.Duration `yaml:"retention"`
	// Notify is how on-call hears of the fixes that wait for review.
	Notify Notify `yaml:"notify"`
	// Models configures the model registry: following the active version, and the
	// gates of a promotion.
	Models Models `yaml:"models"`
}

// Kafka configures the event stream.
type Kafka struct {
	// Brokers of an external cluster; empty starts the embedded broker.
	Brokers []string `yaml:"brokers"`
	// EmbeddedAddr is where the embedded broker listens.
	EmbeddedAddr    string        `yaml:"embeddedAddr"`
	Topic           string        `yaml:"topic"`
	DeadLetterTopic string        `yaml:"deadLetterTopic"`
	GroupID         string        `yaml:"groupID"`
	Partitions      int           `yaml:"partitions"`
	Retention       time.Duration `yaml:"retention"`
	// CreateTopics creates missing topics at start (on by default).
	CreateTopics bool `yaml:"createTopics"`
	// MaxBatch is the most events decided and recorded in one ledger transaction.
	MaxBatch int `yaml:"maxBatch"`
	// SessionTimeout is the consumer group session timeout.
	SessionTimeout time.Duration `yaml:"sessionTimeout"`
	// TLS and SASL secure the connections to kafka.brokers (every client: the
	// consumer, the producers, topic creation, the health probe).
	TLS  KafkaTLS  `yaml:"tls"`
	SASL KafkaSASL `yaml:"sasl"`
}

// NoCluster is the Kubeconfig of shadow mode: no cluster, submissions recorded.
const NoCluster = "none"

// Kubernetes configures the watcher, the submitter and leader election.
type Kubernetes struct {
	// Kubeconfig is a kubeconfig file; "in-cluster" uses the pod's service account.
	// Empty: the simulated cluster (package simcluster) runs in the process, with a
	// demo workload. NoCluster ("none"): no cluster at all; the jobs autofix would
	// submit are appended to DATA_DIR/submissions.jsonl (shadow mode, to try autofix
	// on a team's stream of failures before it may act).
	Kubeconfig string `yaml:"kubeconfig"`
	// Namespaces to watch (empty: all); Selector a label selector Jobs must match.
	Namespaces []string `yaml:"namespaces"`
	Selector   string   `yaml:"selector"`
	// GPUTypeLabel is the node label naming GPU models.
	GPUTypeLabel string `yaml:"gpuTypeLabel"`
	// PendingGrace is how long a pod may fail to start before it is reported.
	PendingGrace time.Duration `yaml:"pendingGrace"`
	// VerifyPatience is how long an event may wait for the cluster to answer
	// whether it is real before it is recorded rejected as not verifiable.
	VerifyPatience time.Duration `yaml:"verifyPatience"`
	// LeaseNamespace and LeaseName locate the leader-election Lease; Identity names
	// this replica (default: the host name, which is the pod name in a cluster).
	LeaseNamespace string `yaml:"leaseNamespace"`
	LeaseName      string `yaml:"leaseName"`
	Identity       string `yaml:"identity"`
	// Kinds are the workload kinds autofix watches and re-submits: Job (always:
	// stage Jobs and deploy stages go through it), JobSet (jobset.x-k8s.io,
	// which needs the JobSet CRD and the autofix-jobsets role), RayJob (ray.io,
	// which needs KubeRay's CRDs and the autofix-rayjobs role) and Workflow (Argo
	// Workflows, argoproj.io, which needs the Workflow CRD and the
	// autofix-workflows role). Default [Job].
	Kinds []string `yaml:"kinds"`
	// Kueue makes autofix read Kueue's objects (kueue.x-k8s.io), which needs the
	// autofix-kueue roles (docs/kubernetes.md, "Kueue").
	Kueue Kueue `yaml:"kueue"`
}

// Kueue configures what autofix reads of Kueue (kubernetes.kueue). A queued
// attempt keeps its queue and is created suspended whether it is enabled or not.
type Kueue struct {
	// Enabled reads the Workloads and ResourceFlavors of queued Jobs: a fix goes
	// without the node selectors Kueue injected at admission, and a queued Job
	// Kueue will not admit is reported.
	Enabled bool `yaml:"enabled"`
	// InadmissibleAfter is how long a queued Job's Workload may go without quota
	// (QuotaReserved False) before that is reported (default 10 minutes): waiting
	// in a queue is what Kueue is for, so this is longer than pendingGrace.
	InadmissibleAfter time.Duration `yaml:"inadmissibleAfter"`
}

// The workload kinds kubernetes.kinds may name.
const (
	KindJob      = "Job"
	KindJobSet   = "JobSet"
	KindRayJob   = "RayJob"
	KindWorkflow = "Workflow" // Argo Workflows (argoproj.io)
)

// clusterKinds are the kinds beside Job, which only a real cluster has.
var clusterKinds = []string{KindJobSet, KindRayJob, KindWorkflow}

// Enabled reports whether kubernetes.kinds names kind.
func (k *Kubernetes) Enabled(kind string) bool { return slices.Contains(k.Kinds, kind) }

// validateKinds checks kubernetes.kinds.
func (k *Kubernetes) validateKinds() error {
	seen := map[string]bool{}
	for i, kind := range k.Kinds {
		switch {
		case kind != KindJob && !slices.Contains(clusterKinds, kind):
			return fmt.Errorf("kubernetes.kinds[%d]: %q, want one of %s, %s", i, kind, KindJob, strings.Join(clusterKinds, ", "))
		case seen[kind]:
			return fmt.Errorf("kubernetes.kinds[%d]: %s twice", i, kind)
		case kind != KindJob && (k.Kubeconfig == "" || k.Kubeconfig == NoCluster):
			return fmt.Errorf("kubernetes.kinds[%d]: %s needs a cluster (kubernetes.kubeconfig a file or in-cluster); the simulated cluster and shadow mode run Jobs only", i, kind)
		}
		seen[kind] = true
	}
	if !seen[KindJob] {
		return fmt.Errorf("kubernetes.kinds: %q, want Job among them (stage Jobs and deploy stages go through it)", k.Kinds)
	}
	return nil
}

// Log configures the structured log.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Default returns the configuration of `autofix serve` with no flags.
func Default() Config {
	return Config{
		DataDir: "./autofix-data",
		HTTP:    HTTP{Addr: "127.0.0.1:8080"}, // limits and timeouts: the api package's defaults
		Kafka: Kafka{
			EmbeddedAddr: "127.0.0.1:9092", Topic: "autofix.failures", DeadLetterTopic: "autofix.failures.dlq",
			GroupID: "autofix", Partitions: 6, Retention: 7 * 24 * time.Hour, CreateTopics: true,
			MaxBatch: 1000, SessionTimeout: 10 * time.Second,
		},
		Catalogue:      failure.DefaultCatalogue(),
		Cluster:        defaultCluster(),
		Classifier:     Classifier{MinConfidence: 0.5, Authority: 0.95},
		BackoffSeconds: 60,
		Kubernetes: Kubernetes{GPUTypeLabel: "nvidia.com/gpu.product", PendingGrace: 2 * time.Minute, VerifyPatience: 15 * time.Minute,
			LeaseNamespace: "autofix", LeaseName: "autofix-leader", Kinds: []string{KindJob},
			Kueue: Kueue{InadmissibleAfter: 10 * time.Minute}},
		Metrics:       defaultMetrics(),
		Notify:        defaultNotify(),
		Models:        defaultModels(),
		Policy:        policy.Default(),
		Log:           Log{Level: "info", Format: "text"},
		ShutdownGrace: 30 * time.Second,
		Retention:     90 * 24 * time.Hour,
	}
}

// Load returns the defaults overlaid with the YAML file at path (if path is not
// empty) and then with the environment (through lookup, normally os.LookupEnv).
// Unknown YAML fields are errors. The result is not validated yet: flags come next.
func Load(path string, lookup func(string) (string, bool)) (Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path) // #nosec G304 -- the operator names the file
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		if err := decodeStrict(data, &c); err != nil {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := c.applyEnv(lookup); err != nil {
		return c, err
	}
	return c, nil
}

func decodeStrict(data []byte, c *Config) error {
	var top map[string]any
	if yaml.Unmarshal(data, &top) == nil {
		if _, ok := top["scenario"]; ok {
			return errors.New("scenario: no longer read: the recommender's prices are catalogue's, the node limits cluster's " +
				"(discovered from the nodes by default); see docs/service.md")
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Environment variables, each overriding one field.
var envVars = []struct {
	name string
	set  func(c *Config, v string) error
}{
	{"AUTOFIX_DATA_DIR", func(c *Config, v string) error { c.DataDir = v; return nil }},
	{"AUTOFIX_DB", func(c *Config, v string) error { c.DB = v; return nil }},
	{"AUTOFIX_HTTP_ADDR", func(c *Config, v string) error { c.HTTP.Addr = v; return nil }},
	{"AUTOFIX_KAFKA_BROKERS", func(c *Config, v string) error { c.Kafka.Brokers = SplitList(v); return nil }},
	{"AUTOFIX_EMBEDDED_KAFKA_ADDR", func(c *Config, v string) error { c.Kafka.EmbeddedAddr = v; return nil }},
	{"AUTOFIX_KAFKA_TOPIC", func(c *Config, v string) error { c.Kafka.Topic = v; return nil }},
	{"AUTOFIX_KAFKA_GROUP", func(c *Config, v string) error { c.Kafka.GroupID = v; return nil }},
	{"AUTOFIX_KAFKA_SASL_PASSWORD", func(c *Config, v string) error { c.Kafka.SASL.Password = Secret(v); return nil }},
	{"AUTOFIX_DRY_RUN", func(c *Config, v string) (err error) { c.Policy.DryRun, err = strconv.ParseBool(v); return err }},
	{"AUTOFIX_LOG_LEVEL", func(c *Config, v string) error { c.Log.Level = v; return nil }},
	{"AUTOFIX_KUBECONFIG", func(c *Config, v string) error { c.Kubernetes.Kubeconfig = v; return nil }},
	{"AUTOFIX_NAMESPACES", func(c *Config, v string) error { c.Kubernetes.Namespaces = SplitList(v); return nil }},
	{"AUTOFIX_IDENTITY", func(c *Config, v string) error { c.Kubernetes.Identity = v; return nil }},
	{"AUTOFIX_METRICS_URL", func(c *Config, v string) error { c.Metrics.URL = v; return nil }},
	{"AUTOFIX_LOG_FORMAT", func(c *Config, v string) error { c.Log.Format = v; return nil }},
	{"AUTOFIX_EXTERNAL_URL", func(c *Config, v string) error { c.HTTP.ExternalURL = v; return nil }},
	{"AUTOFIX_ALERTMANAGER_URLS", func(c *Config, v string) error { c.Notify.Alertmanager.URLs = SplitList(v); return nil }},
}

func (c *Config) applyEnv(lookup func(string) (string, bool)) error {
	if lookup == nil {
		return nil
	}
	for _, e := range envVars {
		if v, ok := lookup(e.name); ok {
			if err := e.set(c, v); err != nil {
				return fmt.Errorf("environment %s=%q: %w", e.name, v, err)
			}
		}
	}
	return nil
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Validate reports the first problem, naming the field.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("dataDir: required")
	}
	if c.DB != "" && !ledger.IsPostgres(c.DB) {
		// Name the scheme only: the rest may hold a password.
		scheme, _, _ := strings.Cut(c.DB, ":")
		return fmt.Errorf("db: a %q URL is not a postgres:// or postgresql:// URL (leave it empty for SQLite in dataDir)", scheme)
	}
	if err := c.HTTP.validate(); err != nil {
		return err
	}
	for i, b := range c.Kafka.Brokers {
		if err := checkAddr(fmt.Sprintf("kafka.brokers[%d]", i), b); err != nil {
			return err
		}
	}
	if len(c.Kafka.Brokers) == 0 {
		if err := checkAddr("kafka.embeddedAddr", c.Kafka.EmbeddedAddr); err != nil {
			return err
		}
	}
	switch {
	case c.Kafka.Topic == "":
		return errors.New("kafka.topic: required")
	case c.Kafka.DeadLetterTopic == "" || c.Kafka.DeadLetterTopic == c.Kafka.Topic:
		return errors.New("kafka.deadLetterTopic: required, and different from kafka.topic")
	case c.Kafka.GroupID == "":
		return errors.New("kafka.groupID: required")
	case c.Kafka.Partitions < 1:
		return fmt.Errorf("kafka.partitions: %d, want at least 1", c.Kafka.Partitions)
	case c.Kafka.MaxBatch < 1 || c.Kafka.MaxBatch > 10000:
		return fmt.Errorf("kafka.maxBatch: %d, want 1 to 10000", c.Kafka.MaxBatch)
	case c.Kafka.SessionTimeout < 6*time.Second:
		return fmt.Errorf("kafka.sessionTimeout: %s, want at least 6s (brokers refuse less)", c.Kafka.SessionTimeout)
	case c.Kafka.Retention < 0:
		return fmt.Errorf("kafka.retention: %s, want positive (0 keeps the broker's default)", c.Kafka.Retention)
	}
	if err := c.Kafka.validateSecurity(); err != nil {
		return err
	}
	if err := c.validateCatalogue(); err != nil {
		return err
	}
	switch {
	case c.BackoffSeconds <= 0:
		return fmt.Errorf("backoffSeconds: %g, want positive", c.BackoffSeconds)
	case c.ShutdownGrace <= 0:
		return fmt.Errorf("shutdownGrace: %s, want positive", c.ShutdownGrace)
	case c.Retention < time.Hour:
		return fmt.Errorf("retention: %s, want at least 1h", c.Retention)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q, want debug, info, warn or error", c.Log.Level)
	}
	if err := c.Kubernetes.validateKinds(); err != nil {
		return err
	}
	if k := &c.Kubernetes; k.Kueue.Enabled && (k.Kubeconfig == "" || k.Kubeconfig == NoCluster) {
		return errors.New("kubernetes.kueue.enabled: needs a cluster (kubernetes.kubeconfig a file or in-cluster); the simulated cluster and shadow mode run no Kueue")
	}
	if k := &c.Kubernetes; k.Kubeconfig != NoCluster {
		switch {
		case k.LeaseNamespace == "" || k.LeaseName == "":
			return errors.New("kubernetes.leaseNamespace, kubernetes.leaseName: required with a cluster")
		case k.PendingGrace <= 0:
			return fmt.Errorf("kubernetes.pendingGrace: %s, want positive", k.PendingGrace)
		case k.Kueue.Enabled && k.Kueue.InadmissibleAfter <= 0:
			return fmt.Errorf("kubernetes.kueue.inadmissibleAfter: %s, want positive", k.Kueue.InadmissibleAfter)
		case k.VerifyPatience < time.Minute:
			return fmt.Errorf("kubernetes.verifyPatience: %s, want at least 1m", k.VerifyPatience)
		case k.GPUTypeLabel == "":
			return errors.New("kubernetes.gpuTypeLabel: required")
		}
		for i, ns := range k.Namespaces {
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				return fmt.Errorf("kubernetes.namespaces[%d]: %q is not a namespace name: %s", i, ns, errs[0])
			}
		}
		if k.Selector != "" {
			if _, err := labels.Parse(k.Selector); err != nil {
				return fmt.Errorf("kubernetes.selector: %w", err)
			}
		}
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return fmt.Errorf("log.format: %q, want text or json", c.Log.Format)
	}
	if err := c.Metrics.validate(); err != nil {
		return err
	}
	if err := c.Notify.validate(c.HTTP.ExternalURL); err != nil {
		return err
	}
	if err := c.Models.validate(); err != nil {
		return err
	}
	return c.Policy.Validate()
}

// LedgerDSN is the ledger's data source: the PostgreSQL URL, or the SQLite file in
// the data directory.
func (c *Config) LedgerDSN() string {
	if c.DB != "" {
		return c.DB
	}
	return filepath.Join(c.DataDir, "ledger.db")
}

func checkAddr(field, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not host:port", field, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s: %q has a bad port", field, addr)
	}
	return nil
}

package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultIsValid(t *testing.T) {
	c, err := Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if got, want := c.LedgerDSN(), filepath.Join("autofix-data", "ledger.db"); got != want {
		t.Errorf("LedgerDSN() = %q, want %q", got, want)
	}
}

func TestLoadFileThenEnvironment(t *testing.T) {
	c, err := Load("testdata/full.yaml", env(map[string]string{
		"AUTOFIX_KAFKA_BROKERS": "a:1, b:2,", "AUTOFIX_DRY_RUN": "false", "AUTOFIX_HTTP_ADDR": "127.0.0.1:9999",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if got := strings.Join(c.Kafka.Brokers, ","); got != "a:1,b:2" {
		t.Errorf("brokers = %q, want the environment's a:1,b:2", got)
	}
	if c.Policy.DryRun {
		t.Error("dryRun = true, want the environment's false")
	}
	if c.HTTP.Addr != "127.0.0.1:9999" || c.Kafka.Partitions != 12 || c.Kafka.Retention != 72*time.Hour ||
		c.Policy.MaxAttempts != 4 || len(c.Policy.Rules) != 2 || c.Log.Format != "json" || c.Kafka.CreateTopics ||
		!c.HTTP.CookiesSecure() || len(c.HTTP.TrustedProxies) != 2 {
		t.Errorf("file values not applied: %+v", c)
	}
	if k := c.Kafka; !k.TLS.Enabled || k.TLS.CAFile != "testdata/kafka-ca.pem" || k.TLS.ServerName != "kafka.internal" ||
		k.SASL.Mechanism != SASLScramSHA512 || k.SASL.Username != "autofix" || k.SASL.PasswordFile != "testdata/kafka-password" {
		t.Errorf("kafka.tls, kafka.sasl not applied: %+v, %+v", k.TLS, k.SASL)
	}
	if m := c.Metrics; m.URL != "https://prometheus-k8s.monitoring.svc:9091/" || m.BearerTokenFile != "testdata/metrics-token" ||
		m.TLS.ServerName != "prometheus-k8s.monitoring.svc" || m.Timeout != 1500*time.Millisecond || m.FailureThreshold != 5 ||
		m.Cooldown != 30*time.Second || m.GPUMemory.PodLabel != "exported_pod" || m.GPUMemory.UnitBytes != 1<<20 ||
		m.Memory.Metric != "container_memory_working_set_bytes" {
		t.Errorf("metrics not applied: %+v", m)
	}
	if c.LedgerDSN() != c.DB {
		t.Errorf("LedgerDSN() = %q, want the postgres URL", c.LedgerDSN())
	}
	if g, ok := c.Catalogue.GPU("NVIDIA-L4"); !ok || g.PerHour != 0.7 || len(c.Catalogue.GPUs) != 2 || c.Catalogue.CPUPerCoreHour != 0.04 {
		t.Errorf("catalogue not applied: %+v", c.Catalogue)
	}
	if c.Cluster.Discover || c.Cluster.LargestNode.Resources() != (failure.Resources{MemoryBytes: 512 << 30, CPUMillis: 64000, GPU: 4,
		EphemeralStorageBytes: 800 << 30}) || c.Classifier.MinConfidence != 0.6 {
		t.Errorf("cluster, classifier not applied: %+v, %+v", c.Cluster, c.Classifier)
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"unknown field", "kafka:\n  topics: x\n", nil, "field topics not found"},
		{"scenario", "scenario: default\n", nil, "scenario: no longer read"},
		{"catalogue price", "catalogue:\n  cpuPerCoreHour: -1\n", nil, "catalogue.cpuPerCoreHour:"},
		{"catalogue gpu", "catalogue:\n  gpus: [{name: x, memoryGiB: 0, perHour: 1}]\n", nil, "catalogue.gpus[0].memoryGiB:"},
		{"catalogue price infinite", "catalogue:\n  memoryPerGiBHour: .inf\n", nil, "catalogue.memoryPerGiBHour:"},
		{"catalogue gpu memory NaN", "catalogue:\n  gpus: [{name: x, memoryGiB: .nan, perHour: 1}]\n", nil, "catalogue.gpus[0].memoryGiB:"},
		{"catalogue gpu price infinite", "catalogue:\n  gpus: [{name: x, memoryGiB: 16, perHour: .inf}]\n", nil, "catalogue.gpus[0].perHour:"},
		{"catalogue gpu speed NaN", "catalogue:\n  gpus: [{name: x, memoryGiB: 16, perHour: 1, relativeSpeed: .nan}]\n", nil,
			"catalogue.gpus[0].relativeSpeed:"},
		{"largest node", "cluster:\n  largestNode: {memoryGiB: -4}\n", nil, "cluster.largestNode.memoryGiB:"},
		{"largest node gpus", "cluster:\n  largestNode: {gpus: 100000}\n", nil, "cluster.largestNode.gpus:"},
		{"confidence", "classifier:\n  minConfidence: 1.5\n", nil, "classifier.minConfidence:"},
		{"http rate", "http:\n  ratePerSecond: -1\n", nil, "http.ratePerSecond:"},
		{"bad db", "db: mysql://root:hunter2@x\n", nil, "db: a \"mysql\" URL"},
		{"bad http addr", "http:\n  addr: localhost\n", nil, "http.addr:"},
		{"tls without a key", "http:\n  tls:\n    certFile: /etc/autofix/tls.crt\n", nil, "http.tls.keyFile: required"},
		{"bad trusted proxy", "http:\n  trustedProxies: [10.0.0.0/8, ingress]\n", nil, "http.trustedProxies[1]:"},
		{"bad broker", "kafka:\n  brokers: [\"k:x\"]\n", nil, "kafka.brokers[0]:"},
		{"same topics", "kafka:\n  deadLetterTopic: autofix.failures\n", nil, "kafka.deadLetterTopic:"},
		{"partitions", "kafka:\n  partitions: 0\n", nil, "kafka.partitions:"},
		{"session", "kafka:\n  sessionTimeout: 1s\n", nil, "kafka.sessionTimeout:"},
		{"batch", "kafka:\n  maxBatch: 0\n", nil, "kafka.maxBatch:"},
		{"level", "log:\n  level: loud\n", nil, "log.level:"},
		{"policy", "policy:\n  maxAttempts: 0\n", nil, "policy.maxAttempts:"},
		{"rule", "policy:\n  rules:\n    - name: x\n      verdict: sometimes\n", nil, "policy.rules[0].verdict:"},
		{"env bool", "", map[string]string{"AUTOFIX_DRY_RUN": "perhaps"}, "AUTOFIX_DRY_RUN"},
		{"not yaml", "kafka: [", nil, "yaml"},
		{"retention", "retention: 10m\n", nil, "retention: 10m0s, want at least 1h"},
		{"namespace placeholder", "kubernetes:\n  namespaces: [ml, \"SET-ME:namespaces-to-watch\"]\n", nil, `kubernetes.namespaces[1]: "SET-ME:namespaces-to-watch" is not a namespace name`},
		{"kind unknown", "kubernetes:\n  kubeconfig: in-cluster\n  kinds: [Job, CronJob]\n", nil, `kubernetes.kinds[1]: "CronJob", want one of Job, JobSet, RayJob, Workflow`},
		{"Workflow on the simulated cluster", "kubernetes:\n  kinds: [Job, Workflow]\n", nil, "kubernetes.kinds[1]: Workflow needs a cluster"},
		{"kind twice", "kubernetes:\n  kubeconfig: in-cluster\n  kinds: [Job, JobSet, JobSet]\n", nil, "kubernetes.kinds[2]: JobSet twice"},
		{"kinds without Job", "kubernetes:\n  kubeconfig: in-cluster\n  kinds: [JobSet]\n", nil, `kubernetes.kinds: ["JobSet"], want Job among them`},
		{"kinds empty", "kubernetes:\n  kinds: []\n", nil, "kubernetes.kinds: [], want Job among them"},
		{"JobSet on the simulated cluster", "kubernetes:\n  kinds: [Job, JobSet]\n", nil, "kubernetes.kinds[1]: JobSet needs a cluster"},
		{"RayJob in shadow mode", "kubernetes:\n  kubeconfig: none\n  kinds: [Job, RayJob]\n", nil, "kubernetes.kinds[1]: RayJob needs a cluster"},
		{"Kueue on the simulated cluster", "kubernetes:\n  kueue: {enabled: true}\n", nil, "kubernetes.kueue.enabled: needs a cluster"},
		{"Kueue in shadow mode", "kubernetes:\n  kubeconfig: none\n  kueue: {enabled: true}\n", nil, "kubernetes.kueue.enabled: needs a cluster"},
		{"Kueue never inadmissible", "kubernetes:\n  kubeconfig: in-cluster\n  kueue: {enabled: true, inadmissibleAfter: 0s}\n", nil,
			"kubernetes.kueue.inadmissibleAfter: 0s, want positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path, env(tt.env))
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load+Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestKinds(t *testing.T) {
	c := Default()
	if !slices.Equal(c.Kubernetes.Kinds, []string{KindJob}) || c.Kubernetes.Enabled(KindJobSet) {
		t.Errorf("default kubernetes.kinds = %q, want [Job]", c.Kubernetes.Kinds)
	}
	c.Kubernetes.Kubeconfig, c.Kubernetes.Kinds = "in-cluster", []string{KindJobSet, KindJob}
	if err := c.Validate(); err != nil || !c.Kubernetes.Enabled(KindJobSet) {
		t.Errorf("kinds [JobSet, Job] with a cluster: Validate() = %v, enabled %v; want valid, JobSet enabled", err, c.Kubernetes.Enabled(KindJobSet))
	}
}

func TestErrorsDoNotShowTheDSN(t *testing.T) {
	c := Default()
	c.DB = "mysql://root:hunter2@db:3306/autofix"
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Validate() = %v, want an error that does not show the password", err)
	}
}

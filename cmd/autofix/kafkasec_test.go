package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/internal/testpki"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/service"
)

// TestServeOverSASLSSL runs serve against an external broker that takes SASL_SSL
// only (TLS, SCRAM-SHA-512), configured from a file as an operator would: its
// watcher (on the simulated cluster) publishes the demo's failures, `autofix
// publish --config` the samples and a malformed line, and serve records them all,
// the malformed one on the dead-letter topic. A wrong password (from the
// environment, which wins over the file) is refused by name, by publish and in
// serve's /readyz.
func TestServeOverSASLSSL(t *testing.T) {
	const user, password = "autofix", "correct horse battery staple"
	ca := testpki.NewCA(t, "kafka")
	server := ca.Server(t, "broker")
	b, err := ingest.StartBroker(ingest.BrokerOptions{Addr: "127.0.0.1:0", SessionTimeoutMin: time.Second,
		TLS:   &tls.Config{Certificates: []tls.Certificate{server.TLS}, MinVersion: tls.VersionTLS12},
		Users: []ingest.User{{Mechanism: ingest.SASLScramSHA512, Username: user, Password: password}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)

	dir := t.TempDir()
	passwordFile := filepath.Join(dir, "kafka-password")
	if err := os.WriteFile(passwordFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "autofix.yaml")
	yaml := fmt.Sprintf(`dataDir: %s
http:
  addr: %s
kafka:
  brokers: [%q]
  sessionTimeout: 6s
  tls:
    enabled: true
    caFile: %s
    serverName: localhost
  sasl:
    mechanism: SCRAM-SHA-512
    username: %s
    passwordFile: %s
`, filepath.Join(dir, "data"), freeAddr(t), b.Addr(), ca.CertFile, user, passwordFile)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func() config.Config {
		cfg, err := config.Load(file, os.LookupEnv)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	t.Run("wrong password", func(t *testing.T) {
		t.Setenv("AUTOFIX_KAFKA_SASL_PASSWORD", "guess")
		code, _, stderr := runCmd(t, "", "publish", "--config", file)
		if code == 0 || !strings.Contains(stderr, "SASL Authentication Failed") {
			t.Errorf("publish with a wrong password: exit %d, stderr %q; want a failure that says SASL authentication failed", code, stderr)
		}
		if strings.Contains(stderr, "guess") || strings.Contains(stderr, password) {
			t.Errorf("publish with a wrong password shows a password: %q", stderr)
		}
		cfg := load()
		cfg.DataDir, cfg.HTTP.Addr = t.TempDir(), freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- serve(ctx, &cfg, slog.New(slog.DiscardHandler)) }()
		waitFor(t, "/readyz to report the refused authentication", 60*time.Second, func() bool {
			token, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin-token"))
			if err != nil {
				return false
			}
			r, code := getReadyAs(cfg.HTTP.Addr, strings.TrimSpace(string(token)))
			return code == 503 && r.Checks["kafka"] == "failing" && strings.Contains(r.Details["kafka"], "SASL Authentication Failed")
		})
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve() = %v", err)
		}
	})

	cfg := load()
	runServe(t, &cfg, "serve") // ready: the health probe authenticates, the consumer consumes
	store, err := ledger.Open(context.Background(), cfg.LedgerDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	waitFor(t, "a failure the watcher published", 90*time.Second, func() bool {
		list, _ := store.List(context.Background(), ledger.Filter{Limit: 100})
		for _, r := range list {
			if r.Event != nil && r.Event.Job.Name == "feature-etl" {
				return true
			}
		}
		return false
	})

	if code, _, stderr := runCmd(t, "", "publish", "--config", file); code != 0 {
		t.Fatalf("publish --config: exit %d: %s", code, stderr)
	}
	// The samples name Jobs the simulated cluster does not have: each is recorded,
	// rejected by the verifier under its position.
	waitFor(t, "the sample events recorded", 60*time.Second, func() bool {
		list, _ := store.List(context.Background(), ledger.Filter{Job: "resnet50-train-7", Limit: 10})
		for _, r := range list {
			if r.Event != nil && r.Event.ID == "sample-oomkilled" {
				return true
			}
		}
		return false
	})

	const poison = `{"not": "an event"}`
	if code, _, stderr := runCmd(t, poison+"\n", "publish", "--config", file, "-"); code != 0 {
		t.Fatalf("publish --config -: exit %d: %s", code, stderr)
	}
	sec, err := service.KafkaSecurity(&cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	dead := &deadLetters{}
	c, err := ingest.NewConsumer(ingest.ConsumerOptions{Brokers: cfg.Kafka.Brokers, Security: sec, Topic: cfg.Kafka.DeadLetterTopic,
		GroupID: "test-dlq-reader", DeadLetterTopic: cfg.Kafka.DeadLetterTopic + ".unused", SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, dead) }()
	waitFor(t, "the malformed line on the dead-letter topic", 60*time.Second, func() bool { return dead.has(poison) })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("reading the dead-letter topic: %v", err)
	}
}

// deadLetters is a Handler that keeps the values it is handed.
type deadLetters struct {
	mu     sync.Mutex
	values []string
}

func (d *deadLetters) Handle(_ context.Context, batch []ingest.Message) ([]ingest.Rejection, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range batch {
		d.values = append(d.values, string(m.Value))
	}
	return nil, nil
}

func (d *deadLetters) has(v string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, got := range d.values {
		if got == v {
			return true
		}
	}
	return false
}

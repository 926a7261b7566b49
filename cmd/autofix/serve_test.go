package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
)

func TestServeRejectsBadConfig(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--http-addr", "nowhere"}, "http.addr"},
		{[]string{"serve", "--db", "mysql://x"}, "db:"},
		{[]string{"serve", "--kafka-brokers", "k:port"}, "kafka.brokers[0]"},
		{[]string{"serve", "--log-level", "chatty"}, "log.level"},
		{[]string{"serve", "--config", "testdata/no-such.yaml"}, "no-such.yaml"},
	}
	for _, tt := range tests {
		code, _, stderr := runCmd(t, "", tt.args...)
		if code == 0 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want a failure naming %q", tt.args, code, stderr, tt.want)
		}
	}
}

type readiness struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
	// Details are shown to token holders only.
	Details map[string]string `json:"details"`
}

func getReady(addr string) (readiness, int) { return getReadyAs(addr, "") }

// getReadyAs asks /readyz with a token ("" for none), which shows the details.
func getReadyAs(addr, token string) (readiness, int) {
	var r readiness
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return r, 0
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return r, 0
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &r)
	return r, resp.StatusCode
}

// waitFor polls cond until it holds. usually is how long that takes on an idle
// machine: past it, the wait is logged, not failed — a loaded machine (-race, a
// cold cache, two cores shared) may take much longer. It fails only when the test
// itself is about to time out (go test -timeout), with what it waited for.
func waitFor(t *testing.T, what string, usually time.Duration, cond func() bool) {
	t.Helper()
	started := time.Now()
	deadline := testDeadline(t)
	logged := false
	for !cond() {
		switch {
		case time.Now().After(deadline):
			t.Fatalf("%s: not after %s (the test's deadline)", what, time.Since(started).Round(time.Second))
		case !logged && time.Since(started) > usually:
			t.Logf("%s: still waiting after %s (usually less); a loaded machine", what, usually)
			logged = true
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testDeadline is when a wait must give up so that the test fails with its own
// message rather than go test's panic: shortly before the test's deadline, or in 10
// minutes without one.
func testDeadline(t *testing.T) time.Time {
	d, ok := t.Deadline()
	if !ok {
		return time.Now().Add(10 * time.Minute)
	}
	return d.Add(-15 * time.Second)
}

// TestServeFollowsTheBroker runs serve against an external broker, takes the broker
// away and brings it back: serve keeps running, says it is not ready while the
// broker is gone, and then records what was published after the restart.
func TestServeFollowsTheBroker(t *testing.T) {
	kafkaAddr, httpAddr := freeAddr(t), freeAddr(t)
	kdir := t.TempDir()
	startBroker := func() *ingest.Broker {
		b, err := ingest.StartBroker(ingest.BrokerOptions{Addr: kafkaAddr, DataDir: kdir})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := startBroker()
	cfg := config.Default()
	cfg.Kubernetes.Kubeconfig = config.NoCluster
	cfg.DataDir, cfg.HTTP.Addr, cfg.Kafka.Brokers = t.TempDir(), httpAddr, []string{kafkaAddr}
	cfg.Kafka.SessionTimeout = 6 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, &cfg, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve() = %v", err)
		}
	}()
	waitFor(t, "ready", 30*time.Second, func() bool { _, code := getReady(httpAddr); return code == http.StatusOK })

	b.Close()
	waitFor(t, "not ready with the broker down", 30*time.Second, func() bool {
		r, code := getReady(httpAddr)
		return code == http.StatusServiceUnavailable && r.Checks["kafka"] != "ok" && r.Checks["ledger"] == "ok"
	})
	b = startBroker()
	defer b.Close()
	waitFor(t, "ready again", 30*time.Second, func() bool { _, code := getReady(httpAddr); return code == http.StatusOK })

	code, _, stderr := runCmd(t, "", "publish", "--brokers", kafkaAddr)
	if code != 0 {
		t.Fatalf("publish: exit %d: %s", code, stderr)
	}
	store, err := ledger.Open(context.Background(), filepath.Join(cfg.DataDir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	waitFor(t, "the sample events recorded", 60*time.Second, func() bool {
		r, err := store.Get(context.Background(), "sample-oomkilled")
		return err == nil && r.State == ledger.Submitted
	})
}

// runServe runs serve until the test ends.
func runServe(t *testing.T, cfg *config.Config, name string) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("AUTOFIX_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("replica", name)
	}
	go func() { done <- serve(ctx, cfg, log) }()
	stopped := false
	t.Cleanup(func() {
		cancel()
		if !stopped {
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
	waitFor(t, name+" ready", 60*time.Second, func() bool { _, code := getReady(cfg.HTTP.Addr); return code == 200 })
	return func() {
		cancel()
		stopped = true
		if err := <-done; err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

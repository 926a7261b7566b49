package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/testwait"
	"github.com/autofix/autofix/remediate"
)

func testConfig(t *testing.T, kubeconfig string) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Kafka.EmbeddedAddr = "127.0.0.1:0"
	cfg.Kubernetes.Kubeconfig = kubeconfig
	cfg.ShutdownGrace = 5 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

func readyz(t *testing.T, s *Service) (int, map[string]api.Check) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/readyz", s.Addr()))
	if err != nil {
		return 0, nil
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct{ Checks map[string]api.Check }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Checks
}

// New, Run, Stop: the service becomes ready, and Stop ends Run (which returns nil)
// with everything it started; a second Run is refused.
func TestRunStop(t *testing.T) {
	s, err := New(context.Background(), testConfig(t, config.NoCluster), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- s.Run(context.Background()) }()
	testwait.Poll(t, "/readyz 200", func() bool { code, _ := readyz(t, s); return code == http.StatusOK })
	s.Stop()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run = %v after Stop, want nil", err)
		}
	default:
		t.Fatal("Stop returned before Run")
	}
	if resp, err := http.Get(fmt.Sprintf("http://%s/healthz", s.Addr())); err == nil {
		_ = resp.Body.Close()
		t.Error("the HTTP listener still answers after Stop")
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("a second Run was not refused")
	}
	s.Stop() // idempotent
}

// Stop without Run closes what New opened: the ledger, the broker, the listener.
func TestStopWithoutRun(t *testing.T) {
	cfg := testConfig(t, config.NoCluster)
	s, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := s.store.Ping(context.Background()); err == nil {
		t.Error("the ledger is still open")
	}
	// The same data directory and ports can be used again at once.
	again, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New after Stop: %v", err)
	}
	again.Stop()
}

// On the simulated cluster of the embedded default, the recommender learns what the
// nodes offer from the nodes, like on a real cluster: the configured largest node
// holds only until then.
func TestNodesAreDiscovered(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.Cluster.LargestNode = config.Node{MemoryGiB: 64, CPU: 8}
	s := runService(t, cfg)
	want := failure.Resources{MemoryBytes: 1 << 40, CPUMillis: 96000, GPU: 8, EphemeralStorageBytes: 1500 << 30}
	testwait.Poll(t, "the nodes' offer", func() bool { return s.brain.rec.Cluster().Largest == want })
	if got := s.brain.rec.Cluster().GPUTypes; !slices.Equal(got, []string{"nvidia-l4", "nvidia-a100-40gb", "nvidia-a100-80gb"}) {
		t.Errorf("GPU models %v, want the simulated nodes' three, in catalogue order", got)
	}
}

func TestReadyNeedsAnElectionThatRuns(t *testing.T) {
	s, err := New(context.Background(), testConfig(t, config.NoCluster), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	h := s.health
	ok := ""
	h.kafkaErr.Store(&ok)
	h.consuming.Store(true)
	h.election = remediate.NewLeaderStatus("autofix-0")
	if ready, checks := h.ready(context.Background()); ready || checks["leader"].State != api.CheckNotReady {
		t.Errorf("before the first election: ready %v, leader %+v", ready, checks["leader"])
	}
	h.election.Record("", fmt.Errorf(`namespaces "autofix" not found`))
	ready, checks := h.ready(context.Background())
	if ready || checks["leader"].State != api.CheckFailing || checks["leader"].Detail != `leader election cannot run: namespaces "autofix" not found` {
		t.Errorf("election failing: ready %v, leader %+v; want not ready, the cause named", ready, checks["leader"])
	}
	h.election.Record("autofix-1", nil)
	if ready, checks := h.ready(context.Background()); !ready || checks["leader"].Detail != "following autofix-1" {
		t.Errorf("another replica leading: ready %v, leader %+v; want ready", ready, checks["leader"])
	}
	// Won, before client-go's callback starts leading: not "following" itself.
	h.election.Record("autofix-0", nil)
	if ready, checks := h.ready(context.Background()); !ready || checks["leader"].Detail != "won the lease; starting to lead" {
		t.Errorf("this replica won the lease: ready %v, leader %+v; want ready, starting to lead", ready, checks["leader"])
	}
}

// A token created while the service runs (autofix token create) works on its first
// request, not after the next periodic reload.
func TestNewTokenWorksAtOnce(t *testing.T) {
	cfg := testConfig(t, config.NoCluster)
	s, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- s.Run(context.Background()) }()
	defer func() {
		s.Stop()
		if err := <-ran; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	testwait.Poll(t, "/readyz 200", func() bool { code, _ := readyz(t, s); return code == http.StatusOK })
	store, err := auth.OpenStore(filepath.Join(cfg.DataDir, auth.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := store.Create("oncall", auth.Viewer)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v1/remediations", s.Addr()), nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the new token's first request: %d, want 200", resp.StatusCode)
	}
}

// Review-page sessions are signed with the keys of http.sessionKeyFile, which every
// replica shares; a file that is not keys stops the start, naming the field.
func TestSessionKeyFile(t *testing.T) {
	cfg := testConfig(t, config.NoCluster)
	cfg.HTTP.SessionKeyFile = filepath.Join(cfg.DataDir, "session-keys")
	if err := os.WriteFile(cfg.HTTP.SessionKeyFile, []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "http.sessionKeyFile") ||
		strings.Contains(err.Error(), "c2hvcnQ") {
		if s != nil {
			s.Stop()
		}
		t.Errorf("a short key: %v; want an error naming http.sessionKeyFile, not the key", err)
	}
	cfg.HTTP.SessionKeyFile = filepath.Join(cfg.DataDir, "missing")
	if s, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "http.sessionKeyFile") {
		if s != nil {
			s.Stop()
		}
		t.Errorf("a missing file: %v; want an error naming http.sessionKeyFile", err)
	}
}

// Stop may come before Run has begun (a signal at start-up): Run then does nothing
// and says so; either way nothing runs on what Stop closed. Run and Stop once
// raced on the service's state, and a Run after Stop served on the closed
// listener and ledger and failed with "use of closed network connection".
func TestStopBeforeRunHasBegun(t *testing.T) {
	s, err := New(context.Background(), testConfig(t, config.NoCluster), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- s.Run(context.Background()) }()
	s.Stop()
	if err := <-ran; err != nil && !errors.Is(err, ErrStopped) {
		t.Errorf("Run = %v; want nil (it ran, and was stopped) or ErrStopped (it had not begun)", err)
	}
	s.Stop() // idempotent
	if err := s.Run(context.Background()); err == nil {
		t.Error("a Run after Stop was not refused")
	}
}

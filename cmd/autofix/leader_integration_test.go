//go:build integration

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/internal/kubetest"
	"github.com/autofix/autofix/service"
)

// serve --kubeconfig on a fresh cluster without the Lease's namespace cannot take
// part in leader election, so no replica acts: /readyz says so (503, the leader check
// naming the missing namespace), the log says it once, and once the namespace exists
// the replica leads and is ready.
func TestIntegrationLeaderElectionThatCannotRun(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir, cfg.HTTP.Addr, cfg.Kafka.EmbeddedAddr = t.TempDir(), freeAddr(t), freeAddr(t)
	cfg.Kafka.SessionTimeout = 6 * time.Second
	cfg.Kubernetes.Kubeconfig, cfg.Kubernetes.LeaseNamespace = c.Kubeconfig, "autofix-system"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	s, err := service.New(sctx, &cfg, newLogger(&logs, &cfg.Log))
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- s.Run(sctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	token := ""
	waitFor(t, "the admin token", 10*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin-token"))
		token = strings.TrimSpace(string(b))
		return err == nil && token != ""
	})
	var r readiness
	var code int
	waitFor(t, "the election's failure in /readyz", 30*time.Second, func() bool {
		r, code = getReadyAs(cfg.HTTP.Addr, token)
		return r.Checks["leader"] == "failing"
	})
	if code != 503 || !strings.Contains(r.Details["leader"], `namespaces "autofix-system" not found`) {
		t.Errorf("/readyz %d, leader %q; want 503 naming the missing namespace", code, r.Details["leader"])
	}
	time.Sleep(3 * time.Second) // more attempts, every 2 s: still one log line
	if n := strings.Count(logs.String(), "leader election cannot run"); n != 1 {
		t.Errorf("the election's failure logged %d times, want once", n)
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "autofix-system"}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Ready as soon as the Lease is won; leading once client-go's callback ran.
	waitFor(t, "ready and leading", 60*time.Second, func() bool {
		r, code = getReadyAs(cfg.HTTP.Addr, token)
		return code == 200 && r.Details["leader"] != "won the lease; starting to lead"
	})
	if r.Details["leader"] != "leading" {
		t.Errorf("leader %q, want leading", r.Details["leader"])
	}
}

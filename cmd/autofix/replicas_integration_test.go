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
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/internal/kubetest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/ledger/ledgertest"
	"github.com/autofix/autofix/simcluster"
)

// TestIntegrationTwoReplicas runs two autofix replicas as deploy/ does — sharing a
// PostgreSQL ledger and a Kafka cluster, each authenticated as the autofix service
// account with only the RBAC in deploy/ — and checks that every failed Job is
// re-submitted exactly once, by the leader, and that the other replica takes over
// when the leader stops.
func TestIntegrationTwoReplicas(t *testing.T) {
	dsn := ledgertest.PostgresDSN(t)
	c := kubetest.Start(t)
	ctx := context.Background()
	for _, ns := range []string{"ml", "autofix"} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kubetest.RunKubelet(t, c.Client, truth, simcluster.Node{Name: "node-1"})
	for _, args := range [][]string{
		{"apply", "-n", "autofix", "-f", "../../deploy/base/serviceaccount.yaml", "-f", "../../deploy/base/rbac.yaml"},
		{"apply", "-f", "../../deploy/overlays/example/ml-rolebinding.yaml"},
	} {
		if out, err := c.Kubectl(args...); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	// The service account's kubeconfig: everything autofix does goes through RBAC.
	token, err := c.Kubectl("create", "token", "autofix", "-n", "autofix", "--duration", "1h")
	if err != nil {
		t.Fatalf("kubectl create token: %v\n%s", err, token)
	}
	admin, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "autofix.kubeconfig")
	saConfig := strings.Replace(string(admin), "token: autofix-test-admin", "token: "+strings.TrimSpace(string(token)), 1)
	if err := os.WriteFile(kubeconfig, []byte(saConfig), 0o600); err != nil {
		t.Fatal(err)
	}

	broker, err := ingest.StartBroker(ingest.BrokerOptions{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	stop := map[string]context.CancelFunc{}
	var cfgs []*config.Config
	for _, id := range []string{"replica-a", "replica-b"} {
		cfg := config.Default()
		cfg.DataDir, cfg.HTTP.Addr, cfg.DB = t.TempDir(), freeAddr(t), dsn
		cfg.Kafka.Brokers, cfg.Kafka.SessionTimeout = []string{broker.Addr()}, 6*time.Second
		cfg.Kubernetes.Kubeconfig, cfg.Kubernetes.Namespaces, cfg.Kubernetes.Identity = kubeconfig, []string{"ml"}, id
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, &cfg)
		stop[id] = runServe(t, &cfg, id)
	}
	store, err := ledger.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	s := &stack{c: c, store: store}

	fail := func(names ...string) {
		for _, n := range names {
			job := s.createJob(t, n, jobOpts{kind: "training", memory: "8Gi", truth: map[string]string{truthMemory: "10Gi"}})
			s.remediation(t, job, 120*time.Second, ledger.Succeeded)
		}
	}
	fail("a-1", "a-2", "a-3")

	lease, err := c.Client.CoordinationV1().Leases("autofix").Get(ctx, "autofix-leader", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("the leader lease: %v %+v", err, lease)
	}
	leader := *lease.Spec.HolderIdentity
	stop[leader]() // the leader goes away; the other must take over
	fail("b-1", "b-2")
	lease, err = c.Client.CoordinationV1().Leases("autofix").Get(ctx, "autofix-leader", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == leader {
		t.Errorf("after %s stopped, the lease is held by %v (err %v); want the other replica", leader, lease.Spec.HolderIdentity, err)
	}

	for _, n := range []string{"a-1", "a-2", "a-3", "b-1", "b-2"} {
		j := s.job(t, n+"-af2")
		r, err := store.Get(ctx, j.Annotations[failure.AnnotationRemediation])
		if err != nil {
			t.Fatal(err)
		}
		submits := 0
		for _, a := range r.Audit {
			if a.To == ledger.Submitted {
				submits++
			}
		}
		if submits != 1 || len(r.Attempts) != 1 {
			t.Errorf("%s: %d submissions, %d attempts; want one each", n, submits, len(r.Attempts))
		}
		if _, err := c.Client.BatchV1().Jobs("ml").Get(ctx, n+"-af3", metav1.GetOptions{}); err == nil {
			t.Errorf("%s was re-submitted twice", n)
		}
	}
	if t.Failed() {
		for _, cfg := range cfgs {
			t.Logf("replica data dir %s", cfg.DataDir)
		}
	}
}

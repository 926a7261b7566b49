//go:build integration

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/kubetest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/remediate"
	"github.com/autofix/autofix/simcluster"
)

var workloadPriorityClassGVR = schema.GroupVersionResource{Group: "kueue.x-k8s.io", Version: "v1beta2", Resource: "workloadpriorityclasses"}

// createKueueQueues makes a WorkloadPriorityClass "high", a ResourceFlavor "reserved" whose nodes are labelled
// pool=reserved, a ClusterQueue of cpu CPUs and memory of it, and a LocalQueue
// "lq" in namespace ml feeding it, and waits until the ClusterQueue is Active.
func createKueueQueues(t *testing.T, c *kubetest.Cluster, cpu, memory string) {
	t.Helper()
	for _, q := range []struct {
		gvr schema.GroupVersionResource
		obj map[string]any
	}{
		// Kueue refuses to make a Workload for a Job whose priority class it does not know.
		{workloadPriorityClassGVR, map[string]any{"kind": "WorkloadPriorityClass", "metadata": map[string]any{"name": "high"}, "value": int64(1000)}},
		{kubetest.ResourceFlavorGVR, map[string]any{"kind": "ResourceFlavor", "metadata": map[string]any{"name": "reserved"},
			"spec": map[string]any{"nodeLabels": map[string]any{"pool": "reserved"}}}},
		{kubetest.ClusterQueueGVR, map[string]any{"kind": "ClusterQueue", "metadata": map[string]any{"name": "cq"},
			"spec": map[string]any{"namespaceSelector": map[string]any{}, "resourceGroups": []any{map[string]any{
				"coveredResources": []any{"cpu", "memory"},
				"flavors": []any{map[string]any{"name": "reserved", "resources": []any{
					map[string]any{"name": "cpu", "nominalQuota": cpu},
					map[string]any{"name": "memory", "nominalQuota": memory}}}}}}}}},
		{kubetest.LocalQueueGVR, map[string]any{"kind": "LocalQueue", "metadata": map[string]any{"name": "lq", "namespace": "ml"},
			"spec": map[string]any{"clusterQueue": "cq"}}},
	} {
		q.obj["apiVersion"] = "kueue.x-k8s.io/v1beta2"
		obj := &unstructured.Unstructured{Object: q.obj}
		if _, err := c.Dynamic.Resource(q.gvr).Namespace(obj.GetNamespace()).Create(context.Background(), obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	c.Await(t, kubetest.ClusterQueueGVR, "", "ClusterQueue cq Active", func(u *unstructured.Unstructured) bool {
		_, ok := kubetest.Condition(u, "Active", "True")
		return u.GetName() == "cq" && ok
	})
}

// workloadOf returns the Workload Kueue made for the object of uid, once match
// holds for it.
func workloadOf(t *testing.T, c *kubetest.Cluster, uid types.UID, what string, match func(*unstructured.Unstructured) bool) *unstructured.Unstructured {
	t.Helper()
	return c.Await(t, kubetest.WorkloadGVR, "ml", what, func(u *unstructured.Unstructured) bool {
		for _, o := range u.GetOwnerReferences() {
			if o.UID == uid && o.Controller != nil && *o.Controller {
				return match(u)
			}
		}
		return false
	})
}

// TestIntegrationKueue runs serve (kubernetes.kinds [Job], kubernetes.kueue
// enabled) against the real API server with the real Kueue controller, the real
// Job controller and the test kubelet: a Job in a LocalQueue is admitted to a
// flavor whose node label Kueue injects, OOM-killed, and fixed by a Job in the
// same queue that Kueue admits in turn; it succeeds, and its outcome is recorded.
func TestIntegrationKueue(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.StartKueue(t, kubetest.KueueJobs)
	kubetest.RunKubelet(t, c.Client, truth, simcluster.Node{Name: "node-1", Labels: map[string]string{"pool": "reserved"}})
	createKueueQueues(t, c, "16", "64Gi")

	cfg := config.Default()
	cfg.DataDir, cfg.HTTP.Addr, cfg.Kafka.EmbeddedAddr = t.TempDir(), freeAddr(t), freeAddr(t)
	cfg.Kafka.SessionTimeout = 6 * time.Second
	cfg.Kubernetes.Kubeconfig, cfg.Kubernetes.Namespaces, cfg.Kubernetes.LeaseNamespace = c.Kubeconfig, []string{"ml"}, "default"
	cfg.Kubernetes.Kueue.Enabled = true
	cfg.Kubernetes.Kueue.InadmissibleAfter = 5 * time.Second
	cfg.BackoffSeconds = 1
	s := serveOn(t, c, &cfg)
	store := s.store

	failed := s.createJob(t, "pretrain", jobOpts{kind: "training", memory: "16Gi",
		labels: map[string]string{kubetest.QueueNameLabel: "lq", remediate.LabelPriorityClass: "high"},
		truth:  map[string]string{truthMemory: "20Gi", simcluster.TruthRunSeconds: "2"}})
	if failed.Spec.Suspend == nil || !*failed.Spec.Suspend {
		t.Fatalf("pretrain was created unsuspended: Kueue's webhook did not suspend it")
	}
	workloadOf(t, c, failed.UID, "the Workload of pretrain admitted", func(u *unstructured.Unstructured) bool {
		_, ok := kubetest.Condition(u, "Admitted", "True")
		return ok
	})
	// Over the ClusterQueue's 64Gi: Kueue never admits it.
	tooBig := s.createJob(t, "too-big", jobOpts{kind: "training", memory: "100Gi", labels: map[string]string{kubetest.QueueNameLabel: "lq"}})
	r := s.remediation(t, failed, 3*time.Minute, ledger.Succeeded, ledger.Failed, ledger.Abandoned, ledger.Rejected, ledger.PendingReview)

	t.Run("the OOM-killed queued Job is fixed once, in its queue, and Kueue admits the fix", func(t *testing.T) {
		if r.State != ledger.Succeeded || r.Category != "oom_memory" || len(r.Attempts) != 1 || r.Attempts[0].JobName != "pretrain-af2" {
			t.Fatalf("remediation: %s %s (%s), attempts %+v; want oom_memory, pretrain-af2 succeeded", r.State, r.Category, r.Reason, r.Attempts)
		}
		fix, err := c.Client.BatchV1().Jobs("ml").Get(ctx, "pretrain-af2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if fix.Labels[kubetest.QueueNameLabel] != "lq" || fix.Labels[remediate.LabelPriorityClass] != "high" || fix.Labels[failure.LabelManaged] != "true" {
			t.Errorf("pretrain-af2's labels %v: want queue lq, priority class high, autofix's", fix.Labels)
		}
		// The Workload's pod set template is the fix's template as autofix created
		// it, before Kueue admitted it (and injected the flavor's node label again).
		wl := workloadOf(t, c, fix.UID, "the Workload of pretrain-af2 admitted and finished", func(u *unstructured.Unstructured) bool {
			_, admitted := kubetest.Condition(u, "QuotaReserved", "True")
			_, finished := kubetest.Condition(u, "Finished", "True")
			return admitted || finished
		})
		podSets, _, _ := unstructured.NestedSlice(wl.Object, "spec", "podSets")
		if len(podSets) != 1 {
			t.Fatalf("the Workload of pretrain-af2 has %d pod sets, want 1", len(podSets))
		}
		selector, _, _ := unstructured.NestedStringMap(podSets[0].(map[string]any), "template", "spec", "nodeSelector")
		if _, ok := selector["pool"]; ok {
			t.Errorf("pretrain-af2 was created with node selector %v: the flavor's pool=reserved Kueue injected into pretrain was copied as the user's", selector)
		}
		outcomes, err := store.AttemptOutcomes(ctx, []string{r.EventID})
		if o, ok := outcomes[r.EventID]; err != nil || !ok || !o.Succeeded || o.Resources.MemoryBytes <= 16<<30 {
			t.Errorf("outcome %+v (%v); want succeeded, with more than 16Gi", o, err)
		}
	})

	t.Run("a queued Job Kueue does not admit is one event, scheduling_capacity, never a resource bump", func(t *testing.T) {
		var r ledger.Remediation
		waitFor(t, "the remediation of too-big's stuck event", 2*time.Minute, func() bool {
			var err error
			r, err = store.Get(ctx, remediate.StuckEventID(tooBig))
			return err == nil && r.Category != ""
		})
		ev := r.Event
		if r.Category != failure.SchedulingCapacity || !strings.Contains(ev.Failure.Message, "insufficient quota") {
			t.Errorf("remediation %s %s (%s), event reason %q message %q; want scheduling_capacity with Kueue's words",
				r.State, r.Category, r.Reason, ev.Failure.Reason, ev.Failure.Message)
		}
		if rec := r.Recommendation; rec != nil && rec.Retry && rec.Chosen >= 0 && rec.Chosen < len(rec.Options) {
			if o := rec.Options[rec.Chosen]; o.Resources.MemoryBytes > 100<<30 || o.Resources.CPUMillis > 4000 {
				t.Errorf("chosen option %+v: a bump of what Kueue cannot admit", o.Resources)
			}
		}
		t.Logf("too-big: %s %s; reason %q message %q", r.State, r.Category, ev.Failure.Reason, ev.Failure.Message)
	})

	t.Run("a fix of a queued Job stays within what its ClusterQueue can admit", func(t *testing.T) {
		// OOM-killed at 60Gi: a fix for it would take more than cq's 64Gi, which Kueue
		// would never admit. The node has memory to spare; the queue does not.
		big := s.createJob(t, "big", jobOpts{kind: "training", memory: "60Gi", labels: map[string]string{kubetest.QueueNameLabel: "lq"},
			truth: map[string]string{truthMemory: "80Gi", simcluster.TruthRunSeconds: "2"}})
		r := s.remediation(t, big, 3*time.Minute, ledger.Submitted, ledger.Succeeded, ledger.Failed, ledger.Abandoned, ledger.Rejected, ledger.PendingReview)
		rec := r.Recommendation
		if rec == nil || r.Category != "oom_memory" {
			t.Fatalf("remediation of big: %s %s (%s), recommendation %v; want oom_memory, recommended", r.State, r.Category, r.Reason, rec)
		}
		for _, o := range rec.Options {
			if o.Resources.MemoryBytes > 64<<30 {
				t.Errorf("option %s: more memory than ClusterQueue cq's 64Gi", failure.FormatBytes(o.Resources.MemoryBytes))
			}
		}
		if !rec.Retry && !strings.Contains(rec.Explanation, "queue's quotas") {
			t.Errorf("no retry, explanation %q: want it to name the queue's quota", rec.Explanation)
		}
		for _, a := range r.Attempts {
			if a.Resources.MemoryBytes > 64<<30 {
				t.Errorf("attempt %s asks for %s, more than cq's 64Gi", a.JobName, failure.FormatBytes(a.Resources.MemoryBytes))
			}
		}
		t.Logf("big: %s, retry %v: %s", r.State, rec.Retry, rec.Explanation)
	})
}

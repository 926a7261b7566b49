package remediate

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autofix/autofix/failure"
)

type collect struct {
	mu  sync.Mutex
	ids []string
}

func (c *collect) Publish(_ context.Context, ev *failure.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids = append(c.ids, ev.ID)
	return nil
}

func (c *collect) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}

// TestWatcherReportsRecentFailuresOnce: of the failed Jobs it finds, the watcher
// reports each recent one once and leaves old history alone.
func TestWatcherReportsRecentFailuresOnce(t *testing.T) {
	failedAt := func(name string, ago time.Duration) *batchv1.Job {
		j := failedJob()
		j.Name, j.UID = name, types.UID("uid-"+name)
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
			Reason: batchv1.JobReasonBackoffLimitExceeded, LastTransitionTime: metav1.NewTime(time.Now().Add(-ago))}}
		return j
	}
	client := fake.NewClientset(failedAt("recent", time.Minute), failedAt("old", 72*time.Hour))
	pub := &collect{}
	w := NewWatcher(client, pub, nil, WatcherOptions{LogLines: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(pub.got()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for a duplicate or the old one to show up
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := pub.got(); len(got) != 1 || got[0] != "k8s-job-uid-recent" {
		t.Errorf("published %v, want only the recent failure, once", got)
	}
}

// TestWatcherGoesOnWithoutANamespaceItCannotList: a namespace without a RoleBinding
// never syncs; the failures of the other namespaces are still reported.
func TestWatcherGoesOnWithoutANamespaceItCannotList(t *testing.T) {
	j := failedJob()
	j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
		Reason: batchv1.JobReasonBackoffLimitExceeded, LastTransitionTime: metav1.Now()}}
	client := fake.NewClientset(j)
	client.PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "locked" {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: a.GetResource().Resource}, "", errors.New("no RoleBinding"))
		}
		return false, nil, nil
	})
	pub := &collect{}
	w := NewWatcher(client, pub, nil, WatcherOptions{Namespaces: []string{"locked", "ml"}, LogLines: -1})
	watchUntilPublished(t, w, pub)
	if got := pub.got(); len(got) != 1 {
		t.Errorf("published %v; want the failure in ml although locked cannot be listed", got)
	}
}

type brokenSpecs struct{}

func (brokenSpecs) KeepSpec(context.Context, *batchv1.Job) error { return errors.New("ledger down") }

func (brokenSpecs) Spec(context.Context, string) (*batchv1.Job, error) {
	return nil, errors.New("ledger down")
}

// TestFailuresArePublishedWhenSpecsCannotBeKept: keeping the spec is a fallback; a
// ledger that cannot take it does not hold the failure back.
func TestFailuresArePublishedWhenSpecsCannotBeKept(t *testing.T) {
	j := failedJob()
	j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
		Reason: batchv1.JobReasonBackoffLimitExceeded, LastTransitionTime: metav1.Now()}}
	pub := &collect{}
	w := NewWatcher(fake.NewClientset(j), pub, nil, WatcherOptions{LogLines: -1, Specs: brokenSpecs{}})
	watchUntilPublished(t, w, pub)
	if len(pub.got()) != 1 {
		t.Errorf("published %v with a broken spec store; want the failure", pub.got())
	}
}

// TestWatcherNamespacesAllAndTwice: "" among the namespaces watches all of them, and a
// namespace named twice is watched once.
func TestWatcherNamespacesAllAndTwice(t *testing.T) {
	for _, namespaces := range [][]string{{""}, {"ml", ""}, {"ml", "ml"}} {
		j := failedJob()
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
			Reason: batchv1.JobReasonBackoffLimitExceeded, LastTransitionTime: metav1.Now()}}
		pub := &collect{}
		w := NewWatcher(fake.NewClientset(j), pub, nil, WatcherOptions{LogLines: -1, Namespaces: namespaces})
		watchUntilPublished(t, w, pub)
		if len(pub.got()) != 1 {
			t.Errorf("namespaces %q: published %v, want the failure", namespaces, pub.got())
		}
	}
}

// watchUntilPublished runs w until it has published something (10 s at most), then
// stops it.
func watchUntilPublished(t *testing.T, w *Watcher, pub *collect) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(pub.got()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

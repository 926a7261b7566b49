package remediate

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/autofix/autofix/failure"
)

// TestADeletedJobsFailureIsReported: a Job deleted before its key was handled (a
// TTL of 0, a person) is reported from its last state, even when a new Job of the
// same name exists by then.
func TestADeletedJobsFailureIsReported(t *testing.T) {
	for _, tombstone := range []bool{false, true} {
		pub := &events{}
		old := failedAt("train", time.Minute)
		again := failedAt("train", 0)
		again.UID, again.Status = "uid-train-2", batchv1.JobStatus{Active: 1}
		c, _ := testController(t, WatcherOptions{}, pub, nil, again)
		var obj any = old
		if tombstone {
			obj = cache.DeletedFinalStateUnknown{Key: "ml/train", Obj: old}
		}
		c.onJobDelete(obj)
		key := queueKey{kind: deletedJobKey, namespace: "ml", name: "train", uid: "uid-train"}
		if got, _ := c.queue.Get(); got != key {
			t.Fatalf("tombstone %v: queued %v, want %v", tombstone, got, key)
		}
		c.queue.Done(key)
		for _, k := range []queueKey{jobKeyOf(again), key} {
			if _, err := c.sync(context.Background(), k); err != nil {
				t.Fatalf("sync(%v) = %v", k, err)
			}
		}
		if got := pub.ids(); !slices.Equal(got, []string{"k8s-job-uid-train"}) {
			t.Errorf("tombstone %v: published %q, want the deleted Job's failure", tombstone, got)
		}
		if n := len(c.gone.keys()); n != 0 {
			t.Errorf("tombstone %v: %d deleted Jobs still kept after their key was handled", tombstone, n)
		}
	}
}

// TestDeletedJobsKeptAreBounded: only deleted Jobs with something to report are
// kept, and no more than the bound; one past it is logged and not queued.
func TestDeletedJobsKeptAreBounded(t *testing.T) {
	running := failedAt("running", 0)
	running.Status = batchv1.JobStatus{Active: 1}
	done := failedAt("done", 0)
	done.Status.Conditions[0].Type = batchv1.JobComplete
	attempt := done.DeepCopy()
	attempt.Name, attempt.UID, attempt.Labels[failure.LabelManaged] = "attempt", "uid-attempt", "true"
	c, _ := testController(t, WatcherOptions{}, &events{}, nil)
	c.gone = newGoneJobs(2)
	for _, j := range []*batchv1.Job{running, done, attempt, failedAt("a", 0), failedAt("b", 0)} {
		c.onJobDelete(j)
	}
	var got []string
	for c.queue.Len() > 0 {
		k, _ := c.queue.Get()
		c.queue.Done(k)
		got = append(got, k.name)
	}
	if want := []string{"attempt", "a"}; !slices.Equal(got, want) {
		t.Errorf("deleted Jobs queued %q, want %q (nothing to report for a running or a plain completed Job; the bound is 2)", got, want)
	}
	if put := c.gone.put(queueKey{kind: deletedJobKey, name: "a", namespace: "ml", uid: "uid-a"}, failedAt("a", 0)); !put {
		t.Error("a deleted Job kept already was refused at the bound")
	}
}

// TestHandlersQueueTypedKeysAndDropResyncs: what the informers' handlers queue.
func TestHandlersQueueTypedKeysAndDropResyncs(t *testing.T) {
	job := failedAt("j", 0)
	newer := job.DeepCopy()
	newer.ResourceVersion = "2"
	ownPod := podOf(job, "j-x", corev1.PodPending)
	loose := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: "ml", ResourceVersion: "1"}}
	setPod := ownPod.DeepCopy()
	setPod.Name, setPod.OwnerReferences[0].Kind = "srv-x", "ReplicaSet"
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "srv", Namespace: "ml", ResourceVersion: "3"}}
	tests := []struct {
		name  string
		event func(c *controller)
		want  []queueKey
	}{
		{"a Job added", func(c *controller) { c.onAdd(jobKey)(job) }, []queueKey{{kind: jobKey, namespace: "ml", name: "j"}}},
		{"a Job changed", func(c *controller) { c.onUpdate(jobKey)(job, newer) }, []queueKey{{kind: jobKey, namespace: "ml", name: "j"}}},
		{"a resync of a Job", func(c *controller) { c.onUpdate(jobKey)(job, job.DeepCopy()) }, nil},
		{"a resync of a Deployment", func(c *controller) { c.onUpdate(deploymentKey)(dep, dep.DeepCopy()) }, nil},
		{"a Deployment added", func(c *controller) { c.onAdd(deploymentKey)(dep) }, []queueKey{{kind: deploymentKey, namespace: "ml", name: "srv"}}},
		{"a Job's pod", func(c *controller) { c.onAdd(podKey)(ownPod) }, []queueKey{{kind: podKey, namespace: "ml", name: "j-x"}}},
		{"a ReplicaSet's pod", func(c *controller) { c.onAdd(podKey)(setPod) }, []queueKey{{kind: podKey, namespace: "ml", name: "srv-x"}}},
		{"a pod of nothing", func(c *controller) { c.onAdd(podKey)(loose) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testController(t, WatcherOptions{}, &events{}, nil)
			tt.event(c)
			var got []queueKey
			for c.queue.Len() > 0 {
				k, _ := c.queue.Get()
				c.queue.Done(k)
				got = append(got, k)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("queued %v, want %v", got, tt.want)
			}
		})
	}
}

// TestProcessNextRetriesWhilePublishingFails: an error requeues the key with
// backoff; the key is forgotten once it is handled.
func TestProcessNextRetriesWhilePublishingFails(t *testing.T) {
	job := failedAt("j", time.Minute)
	pub := &events{}
	pub.failWith(errors.New("kafka down"))
	c, _ := testController(t, WatcherOptions{}, pub, nil, job, podOf(job, "j-x", corev1.PodFailed))
	c.ready[metav1.NamespaceAll] = true
	key := jobKeyOf(job)
	c.queue.Add(key)
	if !c.processNext(context.Background()) || c.queue.NumRequeues(key) != 1 {
		t.Fatalf("after a failed publish: %d requeues, want 1", c.queue.NumRequeues(key))
	}
	pub.failWith(nil)
	c.queue.Add(key) // as the backoff would, later
	if !c.processNext(context.Background()) || c.queue.NumRequeues(key) != 0 || len(pub.ids()) != 1 {
		t.Errorf("after a publish that went through: %d requeues, published %q; want the key forgotten and the failure published",
			c.queue.NumRequeues(key), pub.ids())
	}
}

func TestNewWatcherWithInformersRefuses(t *testing.T) {
	f := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	tests := []struct {
		name    string
		o       WatcherOptions
		sources []Source
		want    string
	}{
		{"no source", WatcherOptions{}, nil, "sources: at least one"},
		{"namespaces in the options", WatcherOptions{Namespaces: []string{"ml"}}, []Source{{"ml", f}}, "WatcherOptions.Namespaces"},
		{"no factory", WatcherOptions{}, []Source{{"ml", nil}}, "sources[0].Factory: nil"},
		{"a namespace twice", WatcherOptions{}, []Source{{"ml", f}, {"ml", f}}, `sources[1].Namespace: "ml" twice`},
		{"all beside others", WatcherOptions{}, []Source{{"ml", f}, {"", f}}, "sources[1].Namespace: all namespaces beside others"},
		{"a bad selector", WatcherOptions{Selector: "team in (nlp"}, []Source{{"ml", f}}, "WatcherOptions.Selector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewWatcherWithInformers(fake.NewClientset(), &events{}, nil, tt.o, tt.sources...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewWatcherWithInformers = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestWatchedNamespaces(t *testing.T) {
	tests := []struct{ named, want []string }{
		{nil, []string{""}},
		{[]string{""}, []string{""}},
		{[]string{"ml", ""}, []string{""}},
		{[]string{"ml", "ml", "vision"}, []string{"ml", "vision"}},
	}
	for _, tt := range tests {
		if got := watchedNamespaces(tt.named); !slices.Equal(got, tt.want) {
			t.Errorf("watchedNamespaces(%q) = %q, want %q", tt.named, got, tt.want)
		}
	}
}

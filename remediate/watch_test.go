package remediate

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The tests below run the whole watcher against a fake clientset, in a synctest
// bubble: the informers, the queue and the worker all run in it, its clock moves
// only when every one of them waits, and synctest.Test fails if any goroutine the
// watcher started is still blocked when the test ends. What a test waits for is
// simulated time, so it does not depend on how fast the machine is.

// running runs w in the bubble until the returned stop is called; stop returns
// Run's error.
func running(t *testing.T, w *Watcher) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

// TestWatcherReportsRecentFailuresOnce: of the failed Jobs it finds, the watcher
// reports each recent one once and leaves old history alone.
func TestWatcherReportsRecentFailuresOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fake.NewClientset(failedAt("recent", time.Minute), failedAt("old", 72*time.Hour))
		pub := &events{}
		stop := running(t, NewWatcher(client, pub, nil, WatcherOptions{LogLines: -1}))
		time.Sleep(time.Hour) // room for a duplicate, or the old one, to show up
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got, want := pub.ids(), []string{"k8s-job-uid-recent"}; !slices.Equal(got, want) {
			t.Errorf("published %q, want %q", got, want)
		}
	})
}

// TestWatcherGoesOnWithoutANamespaceItCannotList: a namespace without a RoleBinding
// never syncs; the failures of the other namespaces are still reported.
func TestWatcherGoesOnWithoutANamespaceItCannotList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fake.NewClientset(failedAt("j", time.Minute))
		client.PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetNamespace() == "locked" {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: a.GetResource().Resource}, "", errors.New("no RoleBinding"))
			}
			return false, nil, nil
		})
		pub := &events{}
		stop := running(t, NewWatcher(client, pub, nil, WatcherOptions{Namespaces: []string{"locked", "ml"}, LogLines: -1}))
		time.Sleep(time.Minute)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := pub.ids(); !slices.Equal(got, []string{"k8s-job-uid-j"}) {
			t.Errorf("published %q; want the failure in ml although locked cannot be listed", got)
		}
	})
}

// TestWatcherNamespacesAllAndTwice: "" among the namespaces watches all of them, and a
// namespace named twice is watched once.
func TestWatcherNamespacesAllAndTwice(t *testing.T) {
	for _, namespaces := range [][]string{{""}, {"ml", ""}, {"ml", "ml"}} {
		synctest.Test(t, func(t *testing.T) {
			pub := &events{}
			stop := running(t, NewWatcher(fake.NewClientset(failedAt("j", time.Minute)), pub, nil, WatcherOptions{LogLines: -1, Namespaces: namespaces}))
			time.Sleep(time.Minute)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if got := pub.ids(); !slices.Equal(got, []string{"k8s-job-uid-j"}) {
				t.Errorf("namespaces %q: published %q, want the failure once", namespaces, got)
			}
		})
	}
}

// TestWatcherReportsAFailureAfterAnOutage: the watcher keeps trying to publish a
// failure while Kafka is down, and publishes it when Kafka is back, hours later.
// (Resyncs are not what brings it back: they are dropped.)
func TestWatcherReportsAFailureAfterAnOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		job := failedAt("j", time.Minute)
		client := fake.NewClientset(job, podOf(job, "j-x", corev1.PodFailed))
		pub := &events{}
		pub.failWith(errors.New("kafka down"))
		stop := running(t, NewWatcher(client, pub, nil, WatcherOptions{LogLines: -1}))
		time.Sleep(3 * time.Hour)
		pub.failWith(nil)
		time.Sleep(20 * time.Minute) // the longest backoff is 1000 s
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := pub.ids(); !slices.Equal(got, []string{"k8s-job-uid-j"}) {
			t.Errorf("published %q after a 3-hour outage, want the failure", got)
		}
	})
}

// TestWatcherReportsADeletedJobWhoseNameIsReused: a failed Job deleted while its
// failure could not be published, and created again under the same name, still has
// its failure reported.
func TestWatcherReportsADeletedJobWhoseNameIsReused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		job := failedAt("train", time.Minute)
		client := fake.NewClientset(job)
		pub := &events{}
		pub.failWith(errors.New("kafka down"))
		stop := running(t, NewWatcher(client, pub, nil, WatcherOptions{LogLines: -1}))
		time.Sleep(time.Minute)
		jobs := client.BatchV1().Jobs("ml")
		if err := jobs.Delete(ctx, "train", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		again := failedAt("train", 0)
		again.UID, again.Status = "uid-train-2", batchv1.JobStatus{Active: 1}
		if _, err := jobs.Create(ctx, again, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		pub.failWith(nil)
		time.Sleep(20 * time.Minute)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := pub.ids(); !slices.Equal(got, []string{"k8s-job-uid-train"}) {
			t.Errorf("published %q, want the deleted Job's failure", got)
		}
	})
}

// TestWatcherRefusesABadSelector: a selector that does not parse is an error, not a
// watcher that passes over every Job.
func TestWatcherRefusesABadSelector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := NewWatcher(fake.NewClientset(failedAt("j", time.Minute)), &events{}, nil, WatcherOptions{Selector: "team in (nlp"}).Run(ctx)
		if err == nil || !strings.Contains(err.Error(), "WatcherOptions.Selector") {
			t.Errorf("Run = %v, want an error naming WatcherOptions.Selector", err)
		}
	})
}

// TestWatcherWithInformersRunsAgain: a watcher on the caller's informers stops
// acting when its Run ends (leadership lost) and, run again, catches up on what
// happened meanwhile; the informers run on throughout.
func TestWatcherWithInformersRunsAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		client := fake.NewClientset(failedAt("first", time.Minute))
		f := informers.NewSharedInformerFactory(client, 0)
		pub := &events{}
		w, err := NewWatcherWithInformers(client, pub, nil, WatcherOptions{LogLines: -1}, Source{Factory: f})
		if err != nil {
			t.Fatal(err)
		}
		f.Start(ctx.Done())
		defer func() {
			cancel()
			f.Shutdown()
		}()
		stop := running(t, w)
		time.Sleep(time.Minute)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if _, err := client.BatchV1().Jobs("ml").Create(ctx, failedAt("second", 0), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		if got := pub.ids(); !slices.Equal(got, []string{"k8s-job-uid-first"}) {
			t.Fatalf("published %q while not running, want only the first failure", got)
		}
		stop = running(t, w)
		time.Sleep(time.Minute)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got, want := pub.ids(), []string{"k8s-job-uid-first", "k8s-job-uid-second"}; !slices.Equal(got, want) {
			t.Errorf("published %q, want %q", got, want)
		}
	})
}

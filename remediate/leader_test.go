package remediate

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/autofix/autofix/internal/testwait"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A replica that cannot take part in the election (its Lease's namespace does not
// exist) says so in its status and in one log line, not in a loop; once the Lease can
// be written it leads, and the error is gone.
func TestLeaderStatusShowsAnElectionThatCannotRun(t *testing.T) {
	kube := fake.NewClientset()
	var mu sync.Mutex
	missing := true
	kube.PrependReactor("create", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if missing {
			return true, nil, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "autofix")
		}
		return false, nil, nil
	})
	var logs syncBuffer
	status := &LeaderStatus{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	led := make(chan struct{}, 1)
	go func() {
		defer close(done)
		Lead(ctx, kube, LeaderOptions{Namespace: "autofix", Name: "autofix-leader", Identity: "a", Status: status,
			LeaseDuration: time.Second, RenewDeadline: 500 * time.Millisecond, RetryPeriod: 20 * time.Millisecond,
			Log: slog.New(slog.NewTextHandler(&logs, nil))}, func(ctx context.Context) {
			select {
			case led <- struct{}{}:
			default:
			}
			<-ctx.Done()
		})
	}()
	testwait.Poll(t, "the failing election to be seen", func() bool { started, _, _, err := status.State(); return started && err != nil })
	_, leading, _, err := status.State()
	if leading || !strings.Contains(err.Error(), `namespaces "autofix" not found`) {
		t.Errorf("status: leading %v, err %v; want not leading, the missing namespace named", leading, err)
	}
	// Let it retry a few times: still one log line.
	testwait.Poll(t, "a few retries", func() bool {
		return len(kube.Actions()) > 10
	})
	if n := strings.Count(logs.String(), "leader election cannot run"); n != 1 {
		t.Errorf("the failure logged %d times, want once:\n%s", n, logs.String())
	}
	mu.Lock()
	missing = false
	mu.Unlock()
	<-led
	testwait.Poll(t, "the status to show leading", func() bool { _, leading, _, err := status.State(); return leading && err == nil })
	if _, _, holder, _ := status.State(); holder != "a" {
		t.Errorf("holder %q, want a", holder)
	}
	cancel()
	<-done
	if _, leading, _, _ := status.State(); leading {
		t.Error("still leading after Lead returned")
	}
}

// A Lease left by a replica that is gone, which this one may read but not write (a
// Role without update): the election cannot run, and the status says so between
// tries too — a read of the same stale Lease is not a replica leading. It once
// cleared the error on every read, so /readyz flapped and each retry logged the
// failure again.
func TestLeaderStatusKeepsAWriteFailureWhileTheLeaseIsStale(t *testing.T) {
	stale := metav1.NewMicroTime(time.Now().Add(-time.Hour))
	dur := int32(1)
	holder := "gone"
	kube := fake.NewClientset(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "autofix", Name: "autofix-leader"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &stale,
			AcquireTime: &stale},
	})
	status := &LeaderStatus{}
	var mu sync.Mutex
	var updates int
	var betweenTries []error // the status as the next write begins: after the read before it
	kube.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		_, _, _, err := status.State()
		mu.Lock()
		defer mu.Unlock()
		updates++
		if updates > 1 {
			betweenTries = append(betweenTries, err)
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"},
			"autofix-leader", errors.New("no update"))
	})
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Lead(ctx, kube, LeaderOptions{Namespace: "autofix", Name: "autofix-leader", Identity: "a", Status: status,
			LeaseDuration: 300 * time.Millisecond, RenewDeadline: 200 * time.Millisecond, RetryPeriod: 10 * time.Millisecond,
			Log: slog.New(slog.NewTextHandler(&logs, nil))}, func(ctx context.Context) { <-ctx.Done() })
	}()
	testwait.Poll(t, "a few failed writes", func() bool { mu.Lock(); defer mu.Unlock(); return updates >= 5 })
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for i, err := range betweenTries {
		if err == nil || !apierrors.IsForbidden(err) {
			t.Errorf("after failed write %d and a read of the same stale Lease: status error %v, want the write's Forbidden", i+1, err)
		}
	}
	if n := strings.Count(logs.String(), "leader election cannot run"); n != 1 {
		t.Errorf("the failure logged %d times, want once", n)
	}
}

// Two replicas starting at once race to create the Lease, and then to update it: the
// loser's AlreadyExists or Conflict is the election working, not failing. It once
// made the loser unready, with an error logged, until its next read.
func TestLeaderStatusLosingARaceIsNotAFailure(t *testing.T) {
	for _, c := range []struct {
		verb string
		err  error
	}{
		{"create", apierrors.NewAlreadyExists(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "autofix-leader")},
		{"update", apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "autofix-leader",
			errors.New("the object has been modified"))},
	} {
		status := &LeaderStatus{}
		var logs syncBuffer
		lock := statusLock{Interface: failingLock{c.verb, c.err}, status: status, where: "autofix/autofix-leader",
			log: slog.New(slog.NewTextHandler(&logs, nil))}
		if c.verb == "create" {
			_ = lock.Create(context.Background(), resourcelock.LeaderElectionRecord{HolderIdentity: "a"})
		} else {
			_ = lock.Update(context.Background(), resourcelock.LeaderElectionRecord{HolderIdentity: "a"})
		}
		if started, _, _, err := status.State(); err != nil || !started {
			t.Errorf("%s lost to another replica: status started %v, error %v; want started, no error", c.verb, started, err)
		}
		if logs.String() != "" {
			t.Errorf("%s lost to another replica: logged %q, want nothing", c.verb, logs.String())
		}
	}
}

// failingLock is a Lease lock whose create or update fails with err.
type failingLock struct {
	verb string
	err  error
}

func (f failingLock) Get(context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	return nil, nil, errors.New("not used")
}

func (f failingLock) Create(context.Context, resourcelock.LeaderElectionRecord) error {
	if f.verb == "create" {
		return f.err
	}
	return nil
}

func (f failingLock) Update(context.Context, resourcelock.LeaderElectionRecord) error {
	if f.verb == "update" {
		return f.err
	}
	return nil
}

func (failingLock) RecordEvent(string) {}
func (failingLock) Identity() string   { return "a" }
func (failingLock) Describe() string   { return "autofix/autofix-leader" }

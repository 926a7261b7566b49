package remediate

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
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

// until polls cond until it holds, for as long as the test may run.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Minute)
	}
	for !cond() {
		if time.Now().After(deadline.Add(-5 * time.Second)) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	until(t, "the failing election to be seen", func() bool { started, _, _, err := status.State(); return started && err != nil })
	_, leading, _, err := status.State()
	if leading || !strings.Contains(err.Error(), `namespaces "autofix" not found`) {
		t.Errorf("status: leading %v, err %v; want not leading, the missing namespace named", leading, err)
	}
	// Let it retry a few times: still one log line.
	until(t, "a few retries", func() bool {
		return len(kube.Actions()) > 10
	})
	if n := strings.Count(logs.String(), "leader election cannot run"); n != 1 {
		t.Errorf("the failure logged %d times, want once:\n%s", n, logs.String())
	}
	mu.Lock()
	missing = false
	mu.Unlock()
	<-led
	until(t, "the status to show leading", func() bool { _, leading, _, err := status.State(); return leading && err == nil })
	if _, _, holder, _ := status.State(); holder != "a" {
		t.Errorf("holder %q, want a", holder)
	}
	cancel()
	<-done
	if _, leading, _, _ := status.State(); leading {
		t.Error("still leading after Lead returned")
	}
}

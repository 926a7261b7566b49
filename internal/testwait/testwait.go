// Package testwait lets a test wait for what it waits for — a condition that other
// goroutines bring about — for as long as the test may run (go test's -timeout), and
// no less. A wait bounded by a wall-clock figure of its own is a timing threshold:
// it holds on a fast, idle machine and fails under load or the race detector, which
// alone slows code several times over.
//
// A condition is re-checked when a Signal says something changed, not on a timer.
// Tests whose code under test waits on timers belong in testing/synctest instead;
// this package is for the waits synctest cannot take: real TCP, real files, real
// processes. It does not decide how long anything may take.
package testwait

import (
	"context"
	"sync"
	"testing"
	"time"
)

// T is the part of *testing.T this package needs: a test, and go test's deadline.
type T interface {
	testing.TB
	Deadline() (deadline time.Time, ok bool)
}

// maxMargin is the most of a test's time kept back, before go test's deadline, to
// fail with a message that names what was waited for rather than with go test's
// panic and a dump of every goroutine.
const maxMargin = 10 * time.Second

// Deadline is when waits of the test give up: a little before go test's deadline
// (a tenth of the time left, 10 s at most). ok is false when go test has none
// (-timeout 0): waits then last as long as the test.
func Deadline(t T) (deadline time.Time, ok bool) {
	d, ok := t.Deadline()
	if !ok {
		return time.Time{}, false
	}
	return d.Add(-min(maxMargin, time.Until(d)/10)), true
}

// Context returns a context that ends at Deadline(t), or when the test ends. Use it
// to bound calls that do real work (connect, publish, query) in a test: it stops a
// hang without timing anything.
func Context(t T) context.Context {
	ctx := t.Context()
	d, ok := Deadline(t)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithDeadline(ctx, d)
	t.Cleanup(cancel)
	return ctx
}

// Timeout is the time left until Deadline(t), for APIs that take a timeout instead of
// a context; a day when go test has no deadline.
func Timeout(t T) time.Duration {
	d, ok := Deadline(t)
	if !ok {
		return 24 * time.Hour
	}
	return max(time.Until(d), 0)
}

// Signal tells waiters that something they may be waiting for has changed. The zero
// Signal is ready to use; it is safe for concurrent use.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// Notify wakes every goroutine waiting on s. It never blocks.
func (s *Signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// next returns a channel closed by the next Notify.
func (s *Signal) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// For waits until cond holds, checking it at once and again after each Notify of s.
// cond must become true only through changes that are followed by a Notify. At
// Deadline(t), or when the test ends, it fails the test with "timed out waiting
// for " and what.
func For(t T, what string, s *Signal, cond func() bool) {
	t.Helper()
	if err := Until(Context(t), s, cond); err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
}

// Until waits until cond holds, checking it at once and again after each Notify of
// s, or until ctx ends, returning ctx's error then.
func Until(ctx context.Context, s *Signal, cond func() bool) error {
	for {
		changed := s.next() // before the check: a Notify in between is not lost
		if cond() {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if cond() {
				return nil
			}
			return context.Cause(ctx)
		}
	}
}

// Poll checks cond every 20 ms until it holds, and fails the test at Deadline(t):
// for conditions nothing signals (a server's readiness, another process's state).
func Poll(t T, what string, cond func() bool) {
	t.Helper()
	d, ok := Deadline(t)
	for !cond() {
		if ok && time.Now().After(d) {
			t.Fatalf("gave up waiting for %s at the test's deadline", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package testwait

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestUntilWakesOnNotify: a condition made true by another goroutine, which then
// notifies, ends the wait; nothing is polled (in the bubble, a poll would advance
// the fake clock and a missed wake-up would deadlock).
func TestUntilWakesOnNotify(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			s    Signal
			n    atomic.Int64
			done = make(chan error)
		)
		go func() { done <- Until(t.Context(), &s, func() bool { return n.Load() >= 3 }) }()
		for range 3 {
			synctest.Wait() // the waiter is parked on the signal
			n.Add(1)
			s.Notify()
		}
		if err := <-done; err != nil {
			t.Errorf("Until() = %v, want nil", err)
		}
		start := time.Now()
		if err := Until(t.Context(), &s, func() bool { return true }); err != nil || time.Since(start) != 0 {
			t.Errorf("Until() of a condition that holds = %v after %s, want nil at once", err, time.Since(start))
		}
	})
}

// TestNotifyBeforeTheWaitIsNotLost: a change and its Notify between the waiter's
// check and its wait still wake it.
func TestNotifyBeforeTheWaitIsNotLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			s     Signal
			flag  atomic.Bool
			calls atomic.Int64
		)
		cond := func() bool {
			if calls.Add(1) == 1 { // the first check fails; the change lands right after it
				flag.Store(true)
				s.Notify()
				return false
			}
			return flag.Load()
		}
		if err := Until(t.Context(), &s, cond); err != nil {
			t.Errorf("Until() = %v, want nil", err)
		}
	})
}

// TestUntilEndsWithItsContext: a condition that never holds ends the wait when the
// context does, with the context's cause.
func TestUntilEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		var s Signal
		start := time.Now()
		err := Until(ctx, &s, func() bool { return false })
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Hour {
			t.Errorf("Until() = %v after %s, want context.DeadlineExceeded after 1h", err, time.Since(start))
		}
	})
}

// deadlined is a T with a deadline of its own choosing.
type deadlined struct {
	*testing.T
	at time.Time
	ok bool
}

func (d deadlined) Deadline() (time.Time, bool) { return d.at, d.ok }

func TestDeadlineKeepsAMarginToReport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		tests := []struct {
			name   string
			left   time.Duration
			ok     bool
			want   time.Time
			wantOK bool
		}{
			{"go test's default 10m", 10 * time.Minute, true, now.Add(10*time.Minute - 10*time.Second), true},
			{"30s left", 30 * time.Second, true, now.Add(27 * time.Second), true},
			{"no deadline", 0, false, time.Time{}, false},
		}
		for _, tt := range tests {
			got, ok := Deadline(deadlined{T: t, at: now.Add(tt.left), ok: tt.ok})
			if !got.Equal(tt.want) || ok != tt.wantOK {
				t.Errorf("%s: Deadline() = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.wantOK)
			}
		}
		if got := Timeout(deadlined{T: t, at: now.Add(30 * time.Second), ok: true}); got != 27*time.Second {
			t.Errorf("Timeout() with 30s left = %s, want 27s", got)
		}
		if got := Timeout(deadlined{T: t}); got != 24*time.Hour {
			t.Errorf("Timeout() without a deadline = %s, want 24h", got)
		}
	})
}

// TestContextEndsAtTheDeadline: the context of a test ends at Deadline, a tenth of
// the minute left before go test's.
func TestContextEndsAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := deadlined{T: t, at: time.Now().Add(time.Minute), ok: true}
		<-Context(d).Done()
		if want := d.at.Add(-6 * time.Second); !time.Now().Equal(want) {
			t.Errorf("Context() ended at %v, want %v", time.Now(), want)
		}
	})
}

// fatal is a T whose Fatalf records its message and panics with errFatal.
type fatal struct {
	deadlined
	msg *string
}

var errFatal = errors.New("Fatalf")

func (f fatal) Fatalf(format string, args ...any) {
	*f.msg = fmt.Sprintf(format, args...)
	panic(errFatal)
}

// forFails calls For and returns what it failed with, "" if it returned.
func forFails(f fatal, what string, s *Signal, cond func() bool) (msg string) {
	defer func() {
		if p := recover(); p != nil && p != errFatal { //nolint:errorlint // our own sentinel, as is
			panic(p)
		}
		msg = *f.msg
	}()
	For(f, what, s, cond)
	return ""
}

// TestForNamesWhatItWaitedFor: a condition that never holds fails the test at the
// deadline, with what it waited for; one that comes true returns.
func TestForNamesWhatItWaitedFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fatal{deadlined{T: t, at: time.Now().Add(time.Minute), ok: true}, new(string)}
		var s Signal
		if got := forFails(f, "the moon", &s, func() bool { return false }); !strings.HasPrefix(got, "timed out waiting for the moon: ") {
			t.Errorf("For() failed with %q, want it to name what it waited for", got)
		}
		*f.msg = ""
		var ready atomic.Bool
		go func() {
			ready.Store(true)
			s.Notify()
		}()
		if got := forFails(f, "ready", &s, ready.Load); got != "" {
			t.Errorf("For() of a condition that comes true failed: %q", got)
		}
	})
}

package engine

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/autofix/autofix/ledger"
)

// wakeLedger is a DispatchLedger in memory: what approve adds is approved until the
// dispatcher moves it.
type wakeLedger struct {
	mu       sync.Mutex
	approved []ledger.Remediation
}

func (l *wakeLedger) approve(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.approved = append(l.approved, ledger.Remediation{EventID: id, State: ledger.Approved})
}

func (l *wakeLedger) Approved(context.Context, int, time.Time) ([]ledger.Remediation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.approved), nil
}

func (l *wakeLedger) Claim(context.Context, string, string, time.Time, time.Time) (bool, int, error) {
	return true, 0, nil
}

func (l *wakeLedger) Defer(context.Context, string, string, time.Time, bool, string) error {
	return nil
}

func (l *wakeLedger) Transition(_ context.Context, id string, _, _ ledger.State, _, _ string, _ time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.approved = slices.DeleteFunc(l.approved, func(r ledger.Remediation) bool { return r.EventID == id })
	return nil
}

func (l *wakeLedger) Paused(context.Context) (bool, error) { return false, nil }

// submitted records the remediations submitted.
type submitted struct {
	mu  sync.Mutex
	ids []string
}

func (s *submitted) Submit(_ context.Context, r *ledger.Remediation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, r.EventID)
	return nil
}

func (s *submitted) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

// TestWakeSubmitsWithoutWaitingForTheTick: a remediation approved while the
// dispatcher waits for its next poll is submitted as soon as Wake is called, not
// an interval later. The clock is synctest's: "at once" is exact.
func TestWakeSubmitsWithoutWaitingForTheTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, rem := &wakeLedger{}, &submitted{}
		d := &Dispatcher{Ledger: l, Remediator: rem, Interval: time.Hour}
		d.Wake() // before Run: remembered, and harmless
		d.Wake() // never blocks
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		synctest.Wait() // Run has looked (twice: once for the early wake) and waits

		for i, id := range []string{"first", "second"} {
			start := time.Now()
			l.approve(id)
			d.Wake()
			synctest.Wait()
			if got, want := rem.got(), []string{"first", "second"}[:i+1]; !slices.Equal(got, want) {
				t.Fatalf("after Wake, submitted %v, want %v", got, want)
			}
			if waited := time.Since(start); waited != 0 {
				t.Errorf("%s submitted %s after Wake, want at once", id, waited)
			}
		}

		// Without a Wake, the poll still finds it.
		l.approve("polled")
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := rem.got(); !slices.Contains(got, "polled") {
			t.Errorf("after an interval, submitted %v, want polled among them", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
}

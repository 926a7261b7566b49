package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// source is a token source for the refresher: it counts its reads, and a read
// waits for release when that is set.
type source struct {
	mu      sync.Mutex
	tokens  []Token
	err     error
	reads   int
	release chan struct{}
}

func (s *source) read(ctx context.Context) ([]Token, error) {
	s.mu.Lock()
	s.reads++
	release := s.release
	s.mu.Unlock()
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tokens), s.err
}

func (s *source) add(name string, role Role) string {
	secret := "afx_" + name + strings.Repeat("0", 43-len(name))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = append(s.tokens, Token{Name: name, Role: role, Hash: hashSecret(secret)})
	return secret
}

func (s *source) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)} }

// TestANewTokenWorksAtOnce: a token added to the source after the Authenticator
// read it authenticates on its first request, and a session's token id made from it
// rechecks; a known token reads nothing. Before, a new token waited for serve's
// next periodic reload (up to 10 s of 401s).
func TestANewTokenWorksAtOnce(t *testing.T) {
	src, clk := &source{}, newClock()
	bob := src.add("bob", Viewer)
	tokens, _ := src.read(t.Context())
	a := New(tokens, Options{Refresh: src.read, Now: clk.Now})
	src.reads = 0

	if p, ok := a.Authenticate(bob); !ok || p.Name != "bob" || src.count() != 0 {
		t.Errorf("Authenticate(bob) = %+v, %v after %d reads; want bob and no read", p, ok, src.count())
	}
	alice := src.add("alice", Approver)
	if p, ok := a.Authenticate(alice); !ok || p != (Principal{"alice", Approver}) {
		t.Errorf("Authenticate(alice), added after the start = %+v, %v; want alice, an approver", p, ok)
	}
	if got := src.count(); got != 1 {
		t.Errorf("reads of the source = %d, want 1", got)
	}

	clk.add(time.Hour)
	carol := src.add("carol", Admin)
	if p, ok := a.Recheck(IDOf(carol)); !ok || p.Name != "carol" {
		t.Errorf("Recheck(carol's id), added since = %+v, %v; want carol", p, ok)
	}
	if got := src.count(); got != 2 {
		t.Errorf("reads of the source = %d, want 2", got)
	}
}

// TestBadSecretsReadTheSourceOncePerInterval: however many unknown secrets arrive,
// the source is read at most once per MinRefreshInterval; a miss within it is
// answered from the tokens in hand, and the next interval refreshes again.
func TestBadSecretsReadTheSourceOncePerInterval(t *testing.T) {
	for _, interval := range []time.Duration{0, 5 * time.Second} {
		t.Run(fmt.Sprint(interval), func(t *testing.T) {
			src, clk := &source{}, newClock()
			a := New(nil, Options{Refresh: src.read, MinRefreshInterval: interval, Now: clk.Now})
			if interval == 0 {
				interval = DefaultMinRefreshInterval
			}
			for i := range 1000 {
				if _, ok := a.Authenticate(fmt.Sprintf("afx_guess-%d", i)); ok {
					t.Fatal("a guess authenticated")
				}
				a.Recheck(IDOf(fmt.Sprint(i)))
			}
			if got := src.count(); got != 1 {
				t.Errorf("1000 bad secrets and ids within one interval: %d reads, want 1", got)
			}
			// A token created within the interval waits for its end.
			late := src.add("late", Viewer)
			clk.add(interval - time.Nanosecond)
			if _, ok := a.Authenticate(late); ok || src.count() != 1 {
				t.Errorf("a new token just within the interval: authenticated %v after %d reads; want refused, 1 read", ok, src.count())
			}
			clk.add(time.Nanosecond)
			if _, ok := a.Authenticate(late); !ok || src.count() != 2 {
				t.Errorf("the new token once the interval is over: authenticated %v after %d reads; want true, 2 reads", ok, src.count())
			}
			for range 1000 {
				a.Authenticate("afx_guess")
			}
			if got := src.count(); got != 2 {
				t.Errorf("1000 more bad secrets in the new interval: %d reads, want 2", got)
			}
		})
	}
}

// TestConcurrentMissesShareOneRead: many requests that miss at once wait for one
// read of the source, and every one of them sees its result.
func TestConcurrentMissesShareOneRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, clk := &source{release: make(chan struct{})}, newClock()
		a := New(nil, Options{Refresh: src.read, Now: clk.Now})
		secret := src.add("new", Approver)
		const n = 50
		got := make([]bool, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if i%2 == 0 {
					_, got[i] = a.Authenticate(secret)
				} else {
					_, got[i] = a.Recheck(IDOf(secret))
				}
			})
		}
		synctest.Wait() // one goroutine reads, the others wait for it
		if reads := src.count(); reads != 1 {
			t.Errorf("%d concurrent misses started %d reads, want 1", n, reads)
		}
		close(src.release)
		wg.Wait()
		if reads := src.count(); reads != 1 {
			t.Errorf("%d concurrent misses: %d reads in all, want 1", n, reads)
		}
		for i, ok := range got {
			if !ok {
				t.Errorf("request %d, which waited for the read, was refused", i)
			}
		}
	})
}

// TestAWaiterGivesUpWithItsContext: a request waiting for a read ends when its own
// context does; the read goes on for the one that started it.
func TestAWaiterGivesUpWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &source{release: make(chan struct{})}
		a := New(nil, Options{Refresh: src.read, Now: newClock().Now})
		secret := src.add("new", Viewer)
		var first bool
		var wg sync.WaitGroup
		wg.Go(func() { _, first = a.Authenticate(secret) })
		synctest.Wait()
		ctx, cancel := context.WithCancel(t.Context())
		var waiter bool
		wg.Go(func() { _, waiter = a.AuthenticateContext(ctx, secret) })
		synctest.Wait()
		cancel()
		synctest.Wait()
		if waiter {
			t.Error("the cancelled waiter authenticated before the read ended")
		}
		close(src.release)
		wg.Wait()
		if !first || src.count() != 1 {
			t.Errorf("the first request: authenticated %v after %d reads; want true, 1", first, src.count())
		}
	})
}

// TestReloadAndFailedReads: Reload reads whatever the interval says and counts for
// it; a failed read keeps the tokens in force; a read that panics does not wedge
// the next.
func TestReloadAndFailedReads(t *testing.T) {
	src, clk := &source{}, newClock()
	bob := src.add("bob", Viewer)
	a := New(nil, Options{Refresh: src.read, Now: clk.Now})
	for range 2 {
		if err := a.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := src.count(); got != 2 || a.Len() != 1 {
		t.Errorf("two Reloads at one instant: %d reads, %d tokens; want 2 and 1", got, a.Len())
	}
	a.Authenticate("afx_guess")
	if got := src.count(); got != 2 {
		t.Errorf("a miss just after a Reload: %d reads, want 2 (the Reload counts for the interval)", got)
	}

	clk.add(time.Minute)
	boom := errors.New("the Secret cannot be read")
	src.err = boom
	if err := a.Reload(t.Context()); !errors.Is(err, boom) {
		t.Errorf("Reload with a failing source = %v, want %v", err, boom)
	}
	if _, ok := a.Authenticate(bob); !ok {
		t.Error("a failed read dropped the tokens in force")
	}

	clk.add(time.Minute)
	panicky := New(nil, Options{Refresh: func(context.Context) ([]Token, error) { panic("read") }, Now: clk.Now})
	func() {
		defer func() { _ = recover() }()
		panicky.Authenticate("afx_guess")
	}()
	panicky.refresh.mu.Lock()
	running := panicky.refresh.running
	panicky.refresh.mu.Unlock()
	if running != nil {
		t.Error("a read that panicked is still marked as running: every later miss would wait for it")
	}

	if err := NewAuthenticator(nil).Reload(t.Context()); err != nil {
		t.Errorf("Reload without a refresh function = %v, want nil", err)
	}
}

// TestTheStartersCancellationDoesNotCancelTheRead: the request that starts a read
// may go away (a client that disconnects); the read goes on for those who wait for
// it, and the new token works for them.
func TestTheStartersCancellationDoesNotCancelTheRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &source{release: make(chan struct{})}
		a := New(nil, Options{Refresh: src.read, Now: newClock().Now})
		secret := src.add("new", Viewer)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = a.AuthenticateContext(ctx, secret) }) // the starter
		synctest.Wait()
		var waiter bool
		wg.Go(func() { _, waiter = a.AuthenticateContext(t.Context(), secret) })
		synctest.Wait()
		cancel() // the starter goes away
		synctest.Wait()
		close(src.release)
		wg.Wait()
		if !waiter || src.count() != 1 {
			t.Errorf("the waiter: authenticated %v after %d reads; want true after the one read the starter began", waiter, src.count())
		}
	})
}

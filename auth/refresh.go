package auth

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultMinRefreshInterval is the least time between two refreshes on unknown
// secrets when Options do not say.
const DefaultMinRefreshInterval = time.Second

// Options configure how an Authenticator refreshes its tokens.
type Options struct {
	// Refresh reads the token sources afresh and returns every token they hold now
	// (the set Set would be given). On a secret or a session's token id it does not
	// know, the Authenticator calls it, takes its tokens and looks again, so that a
	// token created a moment ago (by `autofix token create`, in the Secret, or read
	// by another replica) works on its first request. Calls are synchronous, one at
	// a time: callers that miss while one runs wait for it instead of starting
	// another. An error keeps the tokens in force (Refresh should log its own
	// failures; the Authenticator logs nothing). Nil: no refresh.
	Refresh func(ctx context.Context) ([]Token, error)
	// MinRefreshInterval is the least time from the start of one refresh to the
	// start of the next that a miss may cause (default DefaultMinRefreshInterval),
	// so that a flood of bad secrets reads the sources at most once per interval. A
	// miss within it is answered from the tokens in hand.
	MinRefreshInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// refresher runs Options.Refresh for an Authenticator: at most one call at a time,
// shared by every caller that wants one while it runs, and on misses at most one
// start per interval.
type refresher struct {
	a        *Authenticator
	fn       func(ctx context.Context) ([]Token, error)
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	started time.Time // when the last refresh began (zero: none yet)
	running *refreshCall
}

// refreshCall is a refresh under way; done is closed when it ends, err then set.
type refreshCall struct {
	done chan struct{}
	err  error
}

func newRefresher(a *Authenticator, o Options) *refresher {
	r := &refresher{a: a, fn: o.Refresh, interval: o.MinRefreshInterval, now: o.Now}
	if r.interval <= 0 {
		r.interval = DefaultMinRefreshInterval
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// onMiss refreshes after a miss, unless one began less than the interval ago, and
// reports whether the tokens were refreshed (by this call or by one it waited for).
func (r *refresher) onMiss(ctx context.Context) bool {
	return r.do(ctx, true) == nil
}

// refreshTimeout bounds one read of the token sources.
const refreshTimeout = 15 * time.Second

// errTooSoon is onMiss's answer within the interval.
var errTooSoon = errors.New("auth: the tokens were refreshed less than the minimum interval ago")

// do joins the refresh under way, or starts one: always if !limited, else only if
// the last began at least the interval ago (a clock that went back counts as
// time enough).
func (r *refresher) do(ctx context.Context, limited bool) error {
	r.mu.Lock()
	if c := r.running; c != nil {
		r.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	now := r.now()
	if since := now.Sub(r.started); limited && !r.started.IsZero() && since >= 0 && since < r.interval {
		r.mu.Unlock()
		return errTooSoon
	}
	c := &refreshCall{done: make(chan struct{})}
	r.running, r.started = c, now
	r.mu.Unlock()

	defer func() {
		r.mu.Lock()
		r.running = nil
		r.mu.Unlock()
		close(c.done)
	}()
	c.err = errors.New("auth: the refresh panicked") // until it returns
	// The read is everyone's who waits for it: the request that started it going
	// away must not cancel it for the others (nor spend the interval on nothing).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	tokens, err := r.fn(rctx)
	if err == nil {
		r.a.Set(tokens)
	}
	c.err = err
	return err
}

// Reload reads the token sources now with Options.Refresh and sets their tokens, or
// joins a refresh already under way; it is not held to the minimum interval, and
// counts as the latest refresh for it. A periodic reload should go through it, so
// that the sources are never read twice at once. Without a refresh function it
// does nothing.
func (a *Authenticator) Reload(ctx context.Context) error {
	if a.refresh == nil {
		return nil
	}
	return a.refresh.do(ctx, false)
}

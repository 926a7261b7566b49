package telemetry

import (
	"sync"
	"time"
)

// breaker short-circuits lookups while Prometheus is failing: after threshold
// failed lookups in a row it opens for cooldown, during which every lookup returns
// at once; then one lookup at a time tries again (a probe), and its success closes
// it while its failure opens it for another cooldown.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu       sync.Mutex
	failures int       // lookups failed in a row
	open     bool      // short-circuiting
	until    time.Time // when an open breaker lets a probe through
	probing  bool      // a probe is out
}

// allow reports whether a lookup may go ahead at now. A true answer while open
// sends a probe: its caller must report how it went (done).
func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.open:
		return true
	case b.probing || now.Before(b.until):
		return false
	}
	b.probing = true
	return true
}

// done records how an allowed lookup went, and says whether that opened or closed
// the breaker.
func (b *breaker) done(now time.Time, ok bool) (opened, closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.failures = 0
		closed, b.open = b.open, false
		return false, closed
	}
	b.failures++
	if b.open || b.failures >= b.threshold {
		opened = !b.open
		b.open, b.until = true, now.Add(b.cooldown)
	}
	return opened, false
}

// release ends an allowed lookup that says nothing of Prometheus (its caller gave
// up on it): a probe may go again.
func (b *breaker) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
}

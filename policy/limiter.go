package policy

import (
	"sync"
	"time"
)

// Limiter is a token bucket: the global rate limit on automatic actions.
type Limiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

// NewLimiter returns a full bucket of burst tokens refilled at perMinute per minute.
func NewLimiter(perMinute float64, burst int) *Limiter {
	return &Limiter{rate: perMinute / 60, burst: float64(burst), tokens: float64(burst)}
}

// Available reports whether a token is there at now, without taking it; when there
// is none, how long until there will be.
func (l *Limiter) Available(now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(now)
	if l.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
}

// Take takes a token at now, if there is one: the spending of an action already
// taken (the bucket never goes below empty).
func (l *Limiter) Take(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(now)
	l.tokens = max(0, l.tokens-1)
}

func (l *Limiter) refill(now time.Time) {
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
}

// Allow takes a token at now if there is one. When there is none it returns how long
// until there will be.
func (l *Limiter) Allow(now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true, 0
	}
	return false, time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
}

package remediate

import (
	"sync"
	"time"
)

// seenSet remembers keys for a while: the failures this process published and the
// attempts whose outcome it reported, so that a resync does not report them again.
// It forgets keys older than keep, and past max keys the oldest, so that it stays
// bounded however long the process runs (a key forgotten too early only costs a
// repeat that the ledger dedupes).
type seenSet struct {
	mu        sync.Mutex
	at        map[string]time.Time
	keep      time.Duration
	max       int
	lastPrune time.Time
}

func newSeenSet(keep time.Duration, max int) *seenSet {
	return &seenSet{at: map[string]time.Time{}, keep: keep, max: max}
}

func (s *seenSet) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.at[key]
	return ok
}

func (s *seenSet) add(key string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at[key] = now
	if len(s.at) > s.max || now.Sub(s.lastPrune) > s.keep/24 {
		s.prune(now)
	}
}

// prune drops what is older than keep and, if still over max, the oldest half.
func (s *seenSet) prune(now time.Time) {
	s.lastPrune = now
	for k, t := range s.at {
		if now.Sub(t) > s.keep {
			delete(s.at, k)
		}
	}
	if len(s.at) <= s.max {
		return
	}
	times := make([]time.Time, 0, len(s.at))
	for _, t := range s.at {
		times = append(times, t)
	}
	cutoff := nth(times, len(times)/2)
	for k, t := range s.at {
		if !t.After(cutoff) {
			delete(s.at, k)
		}
	}
}

func (s *seenSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at)
}

// nth returns the n-th smallest of ts (quickselect; ts is reordered).
func nth(ts []time.Time, n int) time.Time {
	lo, hi := 0, len(ts)-1
	for lo < hi {
		p := ts[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for ts[i].Before(p) {
				i++
			}
			for p.Before(ts[j]) {
				j--
			}
			if i <= j {
				ts[i], ts[j] = ts[j], ts[i]
				i++
				j--
			}
		}
		switch {
		case n <= j:
			hi = j
		case n >= i:
			lo = i
		default:
			return ts[n]
		}
	}
	return ts[n]
}

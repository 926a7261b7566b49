package api

import (
	"container/list"
	"sync"
	"time"

	"github.com/autofix/autofix/auth"
)

// Review-page session limits.
const (
	sessionTTL = 8 * time.Hour
	// defaultMaxSessions is how many sessions may be live at once by default.
	defaultMaxSessions = 10000
	// maxSessionsPerToken is how many sessions one token may hold (browsers, tabs
	// logged in apart): past it the token's oldest session ends, so that one
	// token's logins cannot push everyone else's out.
	maxSessionsPerToken = 32
)

// session is a login: the id of its token (rechecked on every request, so a
// revoked token or a changed role takes effect at once), its CSRF token and its end.
type session struct {
	id      string
	token   auth.TokenID
	csrf    string
	expires time.Time
}

// sessions are the review page's live logins, bounded: at most max at once (the
// oldest ends when a login would pass it) and maxSessionsPerToken per token, each
// for sessionTTL. They are kept in the order they began, which with one TTL for all
// is the order they expire in, so that every use of the store drops the expired ones
// from the front: no sweep over all of them, and no expired session outlives the
// next request that looks one up.
type sessions struct {
	max int
	now func() time.Time

	mu       sync.Mutex
	byID     map[string]*list.Element // of order
	order    *list.List               // *session, oldest first
	perToken map[auth.TokenID]int
}

func newSessions(maxLive int, now func() time.Time) *sessions {
	return &sessions{max: maxLive, now: now, byID: map[string]*list.Element{}, order: list.New(),
		perToken: map[auth.TokenID]int{}}
}

// add starts a session for the token and returns it.
func (s *sessions) add(token auth.TokenID) *session {
	sess := &session{id: randomHex(32), token: token, csrf: randomHex(32)}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expire(now)
	if s.perToken[token] >= maxSessionsPerToken {
		for e := s.order.Front(); e != nil; e = e.Next() {
			if e.Value.(*session).token == token {
				s.remove(e)
				break
			}
		}
	}
	for s.order.Len() >= s.max {
		s.remove(s.order.Front())
	}
	sess.expires = now.Add(sessionTTL)
	s.byID[sess.id] = s.order.PushBack(sess)
	s.perToken[token]++
	return sess
}

// get returns the live session id, if there is one.
func (s *sessions) get(id string) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expire(now)
	e, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	if sess := e.Value.(*session); now.Before(sess.expires) {
		return sess, true
	}
	s.remove(e) // the clock went back past its start: it is not in expiry order
	return nil, false
}

// end ends session id, if it is live.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.byID[id]; ok {
		s.remove(e)
	}
	s.expire(s.now())
}

// expire drops the sessions that have ended by now; the caller holds mu.
func (s *sessions) expire(now time.Time) {
	for e := s.order.Front(); e != nil && !now.Before(e.Value.(*session).expires); e = s.order.Front() {
		s.remove(e)
	}
}

// remove drops a session; the caller holds mu.
func (s *sessions) remove(e *list.Element) {
	sess := s.order.Remove(e).(*session)
	delete(s.byID, sess.id)
	if s.perToken[sess.token]--; s.perToken[sess.token] <= 0 {
		delete(s.perToken, sess.token)
	}
}

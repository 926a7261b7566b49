package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"sync/atomic"
)

// Authenticator checks bearer secrets against tokens' hashes. It keeps only the
// hashes in memory. With a refresh function (New, Options.Refresh) it reads its
// token sources afresh when a secret is not one it knows, so a token created a
// moment ago works on its first request. It is safe for concurrent use.
type Authenticator struct {
	entries atomic.Pointer[[]entry]
	refresh *refresher // nil: the tokens change only by Set
}

type entry struct {
	hash [sha256.Size]byte
	id   TokenID
	who  Principal
}

// NewAuthenticator returns an Authenticator of the tokens that never refreshes them
// by itself: New with no Options.
func NewAuthenticator(tokens []Token) *Authenticator {
	return New(tokens, Options{})
}

// New returns an Authenticator of the tokens, refreshed as o says.
func New(tokens []Token, o Options) *Authenticator {
	a := &Authenticator{}
	a.Set(tokens)
	if o.Refresh != nil {
		a.refresh = newRefresher(a, o)
	}
	return a
}

// Set replaces the tokens, for instance after the token file or the Secret changed.
// Requests being authenticated finish against the old set. A token whose hash is not
// hex SHA-256 can never match, so it is left out.
func (a *Authenticator) Set(tokens []Token) {
	es := make([]entry, 0, len(tokens))
	for _, t := range tokens {
		var e entry
		if len(t.Hash) != hex.EncodedLen(sha256.Size) {
			continue
		}
		if _, err := hex.Decode(e.hash[:], []byte(t.Hash)); err != nil {
			continue
		}
		e.id = idOfHash(e.hash)
		e.who = Principal{Name: t.Name, Role: t.Role}
		es = append(es, e)
	}
	a.entries.Store(&es)
}

// Len is the number of tokens that can authenticate.
func (a *Authenticator) Len() int { return len(*a.entries.Load()) }

// Authenticate is AuthenticateContext without a deadline for the refresh.
func (a *Authenticator) Authenticate(secret string) (Principal, bool) {
	return a.AuthenticateContext(context.Background(), secret)
}

// AuthenticateContext returns who holds secret, if anyone. It compares the secret's
// hash with every token's in constant time and without stopping at a match, so the
// time the comparison takes says neither whether a token matched nor which. If two
// tokens share a secret, the first wins. A secret it does not know makes it refresh
// its tokens (see Options.Refresh) and look again; ctx bounds the wait for that.
func (a *Authenticator) AuthenticateContext(ctx context.Context, secret string) (Principal, bool) {
	if secret == "" {
		return Principal{}, false
	}
	sum := sha256.Sum256([]byte(secret))
	return a.find(ctx, func(e *entry) int { return subtle.ConstantTimeCompare(sum[:], e.hash[:]) })
}

// Recheck is RecheckContext without a deadline for the refresh.
func (a *Authenticator) Recheck(id TokenID) (Principal, bool) {
	return a.RecheckContext(context.Background(), id)
}

// RecheckContext returns who holds the token id names now: a login session keeps
// its token's id and asks on every request, so that a revoked token, or one whose
// role changed, ends its sessions once this authenticator has read its tokens again
// (serve does every 10 seconds). An id it does not know makes it refresh
// as AuthenticateContext does: a session made on another replica a moment ago, from
// a token this one has not read yet, is not refused.
func (a *Authenticator) RecheckContext(ctx context.Context, id TokenID) (Principal, bool) {
	return a.find(ctx, func(e *entry) int { return subtle.ConstantTimeCompare(id[:], e.id[:]) })
}

// find looks for the entry eq matches (1), and once more after a refresh if there is
// none.
func (a *Authenticator) find(ctx context.Context, eq func(*entry) int) (Principal, bool) {
	if p, ok := a.lookup(eq); ok {
		return p, true
	}
	if a.refresh == nil || !a.refresh.onMiss(ctx) {
		return Principal{}, false
	}
	return a.lookup(eq)
}

func (a *Authenticator) lookup(eq func(*entry) int) (Principal, bool) {
	es := *a.entries.Load()
	idx, found := 0, 0
	for i := range es {
		m := eq(&es[i])
		idx = subtle.ConstantTimeSelect(m&^found, i, idx)
		found |= m
	}
	if found == 0 {
		return Principal{}, false
	}
	return es[idx].who, true
}

// TokenID names a token without revealing its secret or its hash: a one-way
// function of the hash, the same on every replica and across reloads. A login
// session carries it (in a signed cookie) to find its token again.
type TokenID [16]byte

// IDOf returns the id of the token whose secret is secret.
func IDOf(secret string) TokenID { return idOfHash(sha256.Sum256([]byte(secret))) }

// idDomain keeps token ids apart from any other use of the hashes.
const idDomain = "autofix token id v1\x00"

func idOfHash(hash [sha256.Size]byte) TokenID {
	sum := sha256.Sum256(append([]byte(idDomain), hash[:]...))
	var id TokenID
	copy(id[:], sum[:])
	return id
}

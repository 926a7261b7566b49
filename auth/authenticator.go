package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"sync/atomic"
)

// Authenticator checks bearer secrets against tokens' hashes. It keeps only the
// hashes in memory. It is safe for concurrent use.
type Authenticator struct {
	entries atomic.Pointer[[]entry]
}

type entry struct {
	hash [sha256.Size]byte
	who  Principal
}

// NewAuthenticator returns an Authenticator of the tokens.
func NewAuthenticator(tokens []Token) *Authenticator {
	a := &Authenticator{}
	a.Set(tokens)
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
		e.who = Principal{Name: t.Name, Role: t.Role}
		es = append(es, e)
	}
	a.entries.Store(&es)
}

// Len is the number of tokens that can authenticate.
func (a *Authenticator) Len() int { return len(*a.entries.Load()) }

// Authenticate returns who holds secret, if anyone. It compares the secret's hash with
// every token's in constant time and without stopping at a match, so the time it takes
// says neither whether a token matched nor which. If two tokens share a secret, the
// first wins.
func (a *Authenticator) Authenticate(secret string) (Principal, bool) {
	if secret == "" {
		return Principal{}, false
	}
	return a.lookup(sha256.Sum256([]byte(secret)))
}

// Fingerprint is what a login session keeps of the secret it logged in with: its
// hash, never the secret.
type Fingerprint [sha256.Size]byte

// FingerprintOf returns the fingerprint of secret.
func FingerprintOf(secret string) Fingerprint { return sha256.Sum256([]byte(secret)) }

// Recheck returns who holds the token of f now: a session whose token was revoked,
// or whose role changed, sees it on its next request.
func (a *Authenticator) Recheck(f Fingerprint) (Principal, bool) { return a.lookup(f) }

func (a *Authenticator) lookup(sum [sha256.Size]byte) (Principal, bool) {
	es := *a.entries.Load()
	idx, found := 0, 0
	for i := range es {
		eq := subtle.ConstantTimeCompare(sum[:], es[i].hash[:])
		idx = subtle.ConstantTimeSelect(eq&^found, i, idx)
		found |= eq
	}
	if found == 0 {
		return Principal{}, false
	}
	return es[idx].who, true
}

package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/autofix/autofix/auth"
)

// Review-page sessions are signed cookies, not server state, so that any replica
// can verify a session another made: see docs/decisions.md.
const (
	// sessionTTL is a session's whole life from its login; there is no idle limit.
	sessionTTL = 8 * time.Hour
	// maxClockSkew is how far in the future a session's issue time may be: the
	// replicas' clocks differ a little.
	maxClockSkew = time.Minute
	// MinSessionKeyLen is the least length of a session key, in bytes.
	MinSessionKeyLen = 32
	// sessionVersion is the layout of the cookie below; a cookie of another version is
	// not a session.
	sessionVersion = 1
	nonceLen       = 16
	// payloadLen is the signed part: version, token id, role, issued at and
	// expires at (Unix seconds), nonce.
	payloadLen = 1 + len(auth.TokenID{}) + 1 + 8 + 8 + nonceLen
	macLen     = sha256.Size
)

// roleCodes are the roles as the cookie holds them (one byte, the index; 0 is none).
var roleCodes = []auth.Role{"", auth.Viewer, auth.Approver, auth.Admin}

// session is a login, as its cookie says: the id of its token and the role it had,
// rechecked on every request (a revoked token, or a changed role, ends it when the
// tokens are next read),
// its life, and its CSRF token, derived from the cookie.
type session struct {
	token   auth.TokenID
	role    auth.Role
	issued  time.Time
	expires time.Time
	csrf    string
}

// Why a cookie is not a live session.
var (
	errSessionMalformed = errors.New("not a session cookie")
	errSessionSignature = errors.New("the session's signature does not match any key")
	errSessionExpired   = errors.New("the session has expired")
	errSessionTime      = errors.New("the session's times are not ones this server issues")
)

// sessionKeys sign and verify session cookies: the first key signs, every key
// verifies, so that a key can be added, made first and retired without logging
// anyone out. From each key two are derived, one to sign cookies and one for CSRF
// tokens, so that neither can stand for the other.
type sessionKeys struct {
	sign, csrf [][]byte
	now        func() time.Time
}

// newSessionKeys derives the keys; each must be at least MinSessionKeyLen bytes.
// None: one random key, which only this process knows.
func newSessionKeys(keys [][]byte, now func() time.Time) (*sessionKeys, error) {
	if len(keys) == 0 {
		k := make([]byte, MinSessionKeyLen)
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("SessionKeys: none given, and no random one: %w", err)
		}
		keys = [][]byte{k}
	}
	k := &sessionKeys{now: now}
	for i, key := range keys {
		if len(key) < MinSessionKeyLen {
			return nil, fmt.Errorf("SessionKeys[%d]: %d bytes, want at least %d", i, len(key), MinSessionKeyLen)
		}
		k.sign = append(k.sign, derive(key, "autofix review-page session v1"))
		k.csrf = append(k.csrf, derive(key, "autofix review-page csrf v1"))
	}
	return k, nil
}

func derive(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

func mac(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// issue makes the cookie value of a new session of the token, with the role it has.
func (k *sessionKeys) issue(token auth.TokenID, role auth.Role) (string, session) {
	now := k.now().Truncate(time.Second)
	s := session{token: token, role: role, issued: now, expires: now.Add(sessionTTL)}
	p := make([]byte, 0, payloadLen+macLen)
	p = append(p, sessionVersion)
	p = append(p, token[:]...)
	p = append(p, roleCode(role))
	p = binary.BigEndian.AppendUint64(p, uint64(s.issued.Unix()))  // #nosec G115 -- a time after 1970
	p = binary.BigEndian.AppendUint64(p, uint64(s.expires.Unix())) // #nosec G115 -- a time after 1970
	nonce := make([]byte, nonceLen)
	_, _ = rand.Read(nonce) // crypto/rand does not fail on supported platforms
	p = append(p, nonce...)
	p = append(p, mac(k.sign[0], p)...)
	value := base64.RawURLEncoding.EncodeToString(p)
	s.csrf = k.csrfOf(0, value)
	return value, s
}

// open verifies a cookie value and returns its session, or why it is not one live
// now. It does not know whether the token still exists: the caller rechecks.
func (k *sessionKeys) open(value string) (session, error) {
	if base64.RawURLEncoding.DecodedLen(len(value)) != payloadLen+macLen {
		return session{}, errSessionMalformed
	}
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) != payloadLen+macLen {
		return session{}, errSessionMalformed
	}
	p, sig := b[:payloadLen], b[payloadLen:]
	key := -1
	for i := range k.sign {
		if hmac.Equal(sig, mac(k.sign[i], p)) && key < 0 {
			key = i
		}
	}
	if key < 0 {
		return session{}, errSessionSignature
	}
	// Signed by us: the layout can be trusted from here on.
	if p[0] != sessionVersion {
		return session{}, errSessionMalformed
	}
	var s session
	r := bytes.NewReader(p[1:])
	_, _ = r.Read(s.token[:])
	code, _ := r.ReadByte()
	var issued, expires uint64
	_ = binary.Read(r, binary.BigEndian, &issued)
	_ = binary.Read(r, binary.BigEndian, &expires)
	if int(code) >= len(roleCodes) || code == 0 {
		return session{}, errSessionMalformed
	}
	s.role = roleCodes[code]
	s.issued, s.expires = time.Unix(int64(issued), 0), time.Unix(int64(expires), 0) // #nosec G115 -- signed by us
	now := k.now()
	switch {
	case s.expires.Sub(s.issued) > sessionTTL || s.issued.After(now.Add(maxClockSkew)):
		return session{}, errSessionTime
	case !now.Before(s.expires):
		return session{}, errSessionExpired
	}
	s.csrf = k.csrfOf(key, value)
	return s, nil
}

// csrfOf is the CSRF token of the session whose cookie value is value, signed with
// key: a function of the cookie, so every replica computes the same one and none
// stores it. A page from another origin can neither read the cookie nor compute it.
func (k *sessionKeys) csrfOf(key int, value string) string {
	return base64.RawURLEncoding.EncodeToString(mac(k.csrf[key], []byte(value)))
}

func roleCode(r auth.Role) byte {
	for i, c := range roleCodes {
		if c == r && i > 0 {
			return byte(i)
		}
	}
	return 0
}

// ParseSessionKeys reads session keys from a key file's contents: one key a line,
// base64 (standard or URL alphabet, padded or not) of at least MinSessionKeyLen
// random bytes (`head -c 32 /dev/urandom | base64`), the signing key first; blank
// lines and lines beginning with # are skipped. Errors name the line, never a key.
func ParseSessionKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, err := decodeKey(string(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64", i+1)
		}
		if len(key) < MinSessionKeyLen {
			return nil, fmt.Errorf("line %d: a key of %d bytes, want at least %d", i+1, len(key), MinSessionKeyLen)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key: want one base64 key a line")
	}
	return keys, nil
}

func decodeKey(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		var key []byte
		if key, err = enc.DecodeString(s); err == nil {
			return key, nil
		}
	}
	return nil, err
}

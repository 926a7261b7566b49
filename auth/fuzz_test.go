package auth

import (
	"strings"
	"testing"
)

// FuzzParseSecretValue feeds the parser of the Secret's values: it accepts a value
// only with a valid role and a long enough secret, whose hash then authenticates as
// that role, and its errors never repeat the value.
func FuzzParseSecretValue(f *testing.F) {
	for _, seed := range []string{
		"admin:" + s1, "viewer:" + s2 + "\n", "approver:" + s1 + ":" + s2, s1, ":", "admin:", "root:" + s1,
		"admin:short", "admin:" + s1 + "\x00", "\xff\xfe:" + s1,
	} {
		f.Add("ci", []byte(seed))
	}
	f.Add("Bad.Key", []byte("admin:"+s1))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		tok, err := parseSecretValue(key, value)
		if err != nil {
			if !strings.Contains(err.Error(), "key ") {
				t.Fatalf("parseSecretValue error %q does not name the key", err)
			}
			// Any run of 8 bytes of the value, outside the key and the error's own
			// words, would be a leak; checking the secret part whole is enough.
			_, secret, ok := strings.Cut(strings.TrimSpace(string(value)), ":")
			if ok && len(secret) >= 8 && !strings.Contains(key, secret) && strings.Contains(err.Error(), secret) {
				t.Fatalf("parseSecretValue error %q repeats the secret", err)
			}
			return
		}
		role, secret, _ := strings.Cut(strings.TrimSpace(string(value)), ":")
		if tok.Name != key || string(tok.Role) != role || len(secret) < minSecretLen {
			t.Fatalf("parseSecretValue(%q, %q) = %+v: accepted a bad entry", key, value, tok)
		}
		p, ok := NewAuthenticator([]Token{tok}).Authenticate(secret)
		if !ok || p.Name != key || p.Role != tok.Role {
			t.Fatalf("the parsed token does not authenticate its secret: %+v, %v", p, ok)
		}
	})
}

package api

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/auth"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, MinSessionKeyLen) }

func mustKeys(t *testing.T, clk *clock, keys ...[]byte) *sessionKeys {
	t.Helper()
	k, err := newSessionKeys(keys, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newClockAt() *clock { return &clock{now: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)} }

// TestSessionCookies: a cookie opens only with a key that signed it, unchanged,
// within its life; forged, tampered, foreign, expired and future cookies do not.
func TestSessionCookies(t *testing.T) {
	clk := newClockAt()
	id := auth.IDOf("afx_secret")
	oldKey, newKey, otherKey := key(1), key(2), key(3)
	old := mustKeys(t, clk, oldKey)
	value, issued := old.issue(id, auth.Approver)

	random := make([]byte, payloadLen+macLen)
	_, _ = rand.Read(random)
	unsignedRole := func() string { // a cookie of this layout with a role code no server writes, signed
		b, _ := base64.RawURLEncoding.DecodeString(value)
		p := b[:payloadLen]
		p[1+len(id)] = 9
		return base64.RawURLEncoding.EncodeToString(append(p, mac(old.sign[0], p)...))
	}
	for _, tc := range []struct {
		name  string
		keys  *sessionKeys
		value string
		at    time.Duration // after the login
		want  error
	}{
		{"its own key", old, value, 0, nil},
		{"near its end", old, value, sessionTTL - time.Second, nil},
		{"at its end", old, value, sessionTTL, errSessionExpired},
		{"long after", old, value, 1000 * time.Hour, errSessionExpired},
		{"issued in the future", old, value, -2 * maxClockSkew, errSessionTime},
		{"within the clock skew", old, value, -maxClockSkew / 2, nil},
		{"rotated: the old key second", mustKeys(t, clk, newKey, oldKey), value, 0, nil},
		{"rotated: the old key dropped", mustKeys(t, clk, newKey), value, 0, errSessionSignature},
		{"another key", mustKeys(t, clk, otherKey), value, 0, errSessionSignature},
		{"forged: random bytes", old, base64.RawURLEncoding.EncodeToString(random), 0, errSessionSignature},
		{"forged: no signature", old, value[:len(value)-43], 0, errSessionMalformed},
		{"empty", old, "", 0, errSessionMalformed},
		{"not base64", old, strings.Repeat("!", len(value)), 0, errSessionMalformed},
		{"an old session id", old, strings.Repeat("ab", 32), 0, errSessionMalformed},
		{"too long", old, value + "AAAA", 0, errSessionMalformed},
		{"an unknown role, signed", old, unsignedRole(), 0, errSessionMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := &clock{now: clk.Now().Add(tc.at)}
			tc.keys.now = at.Now
			defer func() { tc.keys.now = clk.Now }()
			got, err := tc.keys.open(tc.value)
			if !errors.Is(err, tc.want) {
				t.Fatalf("open = %v, want %v", err, tc.want)
			}
			if err == nil && (got.token != id || got.role != auth.Approver || got.csrf != issued.csrf || !got.expires.Equal(issued.expires)) {
				t.Errorf("open = %+v, want %+v", got, issued)
			}
		})
	}

	// Every byte of the cookie is covered: changing any one refuses it.
	raw, _ := base64.RawURLEncoding.DecodeString(value)
	for i := range raw {
		b := bytes.Clone(raw)
		b[i] ^= 0x01
		if _, err := old.open(base64.RawURLEncoding.EncodeToString(b)); !errors.Is(err, errSessionSignature) {
			t.Errorf("byte %d changed: open = %v, want %v", i, err, errSessionSignature)
		}
	}

	// The new key signs once it is first; the old one still verifies.
	rotated := mustKeys(t, clk, newKey, oldKey)
	v2, s2 := rotated.issue(id, auth.Viewer)
	if _, err := old.open(v2); !errors.Is(err, errSessionSignature) {
		t.Errorf("a cookie of the new key opened with the old one: %v, want %v", err, errSessionSignature)
	}
	if got, err := mustKeys(t, clk, newKey).open(v2); err != nil || got.csrf != s2.csrf || got.role != auth.Viewer {
		t.Errorf("a cookie of the new key with the new key alone: %+v, %v", got, err)
	}
	// Two sessions of one token have different cookies and CSRF tokens.
	v3, s3 := old.issue(id, auth.Approver)
	if v3 == value || s3.csrf == issued.csrf {
		t.Error("two logins of one token got the same cookie or CSRF token")
	}
}

func TestSessionKeysMustBeLongEnough(t *testing.T) {
	_, err := newSessionKeys([][]byte{key(1), make([]byte, MinSessionKeyLen-1)}, time.Now)
	if err == nil || !strings.Contains(err.Error(), "SessionKeys[1]") {
		t.Errorf("a short second key: %v, want an error naming SessionKeys[1]", err)
	}
	o := newEnv(t).opts
	o.SessionKeys = [][]byte{[]byte("short")}
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "SessionKeys[0]") {
		t.Errorf("New with a short key: %v, want an error naming SessionKeys[0]", err)
	}
}

func TestParseSessionKeys(t *testing.T) {
	k1, k2 := key(7), bytes.Repeat([]byte{0xfb}, 48)
	for _, tc := range []struct {
		name, file string
		want       [][]byte
		err        string
	}{
		{"one", base64.StdEncoding.EncodeToString(k1) + "\n", [][]byte{k1}, ""},
		{"two, comments, blank lines, URL alphabet, no padding",
			"# signing key first\n\n" + base64.RawURLEncoding.EncodeToString(k2) + "\r\n  " + base64.StdEncoding.EncodeToString(k1) + "  \n",
			[][]byte{k2, k1}, ""},
		{"none", "# nothing\n\n", nil, "no key"},
		{"short", base64.StdEncoding.EncodeToString(k1) + "\n" + base64.StdEncoding.EncodeToString([]byte("sixteen bytes!!!")), nil, "line 2: a key of 16 bytes"},
		{"not base64", "not a key!\n", nil, "line 1: not base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSessionKeys([]byte(tc.file))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseSessionKeys = %v, want an error with %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "sixteen") || strings.Contains(err.Error(), "not a key") {
					t.Errorf("the error %q repeats the key", err)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("ParseSessionKeys = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestSessionsEndWithTheirTokenOrRole: a session lasts while its token exists with
// the role it logged in with: revoked, or given another role, the session ends on
// the next request.
func TestSessionsEndWithTheirTokenOrRole(t *testing.T) {
	e := newEnv(t)
	ts, err := auth.OpenStore(e.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	session := e.login(auth.Approver)
	if status, _ := e.page(session, "/ui/"); status != http.StatusOK {
		t.Fatalf("the queue after login: %d", status)
	}
	changed := ts.Tokens()
	for i := range changed {
		if changed[i].Role == auth.Approver {
			changed[i].Role = auth.Admin
		}
	}
	e.auth.Set(changed)
	if status, _ := e.page(session, "/ui/"); status != http.StatusSeeOther {
		t.Errorf("the approver's session after its token became admin: %d, want a redirect to the login", status)
	}
	e.auth.Set(ts.Tokens())
	if status, _ := e.page(session, "/ui/"); status != http.StatusOK {
		t.Errorf("the session once its token has its role again: %d, want 200", status)
	}
	if err := ts.Revoke("val"); err != nil {
		t.Fatal(err)
	}
	e.auth.Set(ts.Tokens())
	if status, _ := e.page(session, "/ui/"); status != http.StatusSeeOther {
		t.Errorf("the session after its token was revoked: %d, want a redirect to the login", status)
	}
}

// TestSessionsExpireAndLogoutClears: a session ends sessionTTL after its login,
// whatever its use; logging out clears the cookie.
func TestSessionsExpireAndLogoutClears(t *testing.T) {
	clk := newClockAt()
	e := newEnv(t, func(o *Options) { o.Now = clk.Now })
	session := e.login(auth.Viewer)
	for range 7 {
		clk.add(time.Hour)
		if status, _ := e.page(session, "/ui/"); status != http.StatusOK {
			t.Fatalf("the session at %s: %d, want 200", clk.Now(), status)
		}
	}
	clk.add(time.Hour)
	if status, _ := e.page(session, "/ui/"); status != http.StatusSeeOther {
		t.Errorf("the session %s after its login: %d, want a redirect to the login", sessionTTL, status)
	}

	session = e.login(auth.Viewer)
	status, page := e.page(session, "/ui/")
	if status != http.StatusOK {
		t.Fatalf("the queue: %d", status)
	}
	csrf := hiddenCSRF(t, page)
	req, _ := http.NewRequest("POST", e.url+"/ui/logout", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: session})
	resp, err := e.noRedirects().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	cleared := false
	for _, c := range resp.Cookies() {
		cleared = cleared || (c.Name == sessionCookie && c.Value == "" && c.MaxAge < 0)
	}
	if resp.StatusCode != http.StatusSeeOther || !cleared {
		t.Errorf("logout: %d, cookie cleared %v; want 303 and the cookie cleared", resp.StatusCode, cleared)
	}
}

// TestCSRFTokensBelongToTheirSession: a form post needs the CSRF token of its own
// session: another session's, or none, is a 403 and changes nothing.
func TestCSRFTokensBelongToTheirSession(t *testing.T) {
	e := newEnv(t)
	r := e.pending(oomEvent)
	mine, theirs := e.login(auth.Approver), e.login(auth.Approver)
	_, page := e.page(theirs, "/ui/")
	for _, csrf := range []string{"", hiddenCSRF(t, page), "x"} {
		req, _ := http.NewRequest("POST", e.url+"/ui/remediations/"+r.EventID+"/reject",
			strings.NewReader(url.Values{"csrf": {csrf}, "reason": {"no"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: mine})
		resp, err := e.noRedirects().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a reject with the CSRF token %.8q: %d, want 403", csrf, resp.StatusCode)
		}
	}
	if got, err := e.store.Get(t.Context(), r.EventID); err != nil || got.State != r.State {
		t.Errorf("after the refused posts: %s, %v; want %s", got.State, err, r.State)
	}
}

// hiddenCSRF is the CSRF token of a page's first form.
func hiddenCSRF(t *testing.T, page string) string {
	t.Helper()
	const mark = `name="csrf" value="`
	i := strings.Index(page, mark)
	if i < 0 {
		t.Fatal("the page has no CSRF field")
	}
	v := page[i+len(mark):]
	return v[:strings.Index(v, `"`)]
}

package api

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// badLogin posts a wrong token to the review page's login form, with xff (if not "")
// as X-Forwarded-For, and returns the status.
func (e *env) badLogin(xff string) int {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.url+"/ui/login", strings.NewReader(url.Values{"token": {"afx_guess"}}.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestFailedLoginsAreRateLimited: the review page's failed logins count against the
// same limiter as bad bearer tokens: 100 parallel bad logins get 429s.
func TestFailedLoginsAreRateLimited(t *testing.T) {
	e := newEnv(t)
	statuses := make([]int, 100)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() { statuses[i] = e.badLogin("") })
	}
	wg.Wait()
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	if counts[http.StatusTooManyRequests] == 0 || counts[http.StatusUnauthorized]+counts[http.StatusTooManyRequests] != 100 {
		t.Errorf("100 parallel bad logins: statuses %v, want 401s then 429s", counts)
	}
	// The bearer path shares the budget: a bad token is refused with 429 too.
	req, _ := http.NewRequest("GET", e.url+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer afx_guess")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a bad bearer token after 100 bad logins: %d, want 429", resp.StatusCode)
	}
}

// TestBehindATrustedProxyEachClientHasItsOwnBudget: behind a trusted proxy the
// client is the right-most address of X-Forwarded-For that is not a trusted proxy,
// so one client's failed logins do not lock out another's; what a client writes to
// the left of that address is not read.
func TestBehindATrustedProxyEachClientHasItsOwnBudget(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	})
	throttled := false
	for range 40 {
		// A forged left-most hop (a fresh one each time) does not buy a new budget.
		throttled = throttled || e.badLogin(fmt.Sprintf("192.0.2.%d, 203.0.113.7", rand.IntN(250))) == http.StatusTooManyRequests
	}
	if !throttled {
		t.Fatal("40 bad logins of 203.0.113.7 through the proxy: never a 429")
	}
	if got := e.badLogin("198.51.100.9"); got != http.StatusUnauthorized {
		t.Errorf("another client behind the same proxy: %d, want 401 (its own budget)", got)
	}
	// The proxy's own address in the header, right of the client, is skipped.
	if got := e.badLogin("203.0.113.7, 127.0.0.1"); got != http.StatusTooManyRequests {
		t.Errorf("203.0.113.7 through two trusted hops: %d, want 429 (the same client)", got)
	}
}

// TestForgedForwardedForIsIgnored: a peer that is not a trusted proxy cannot pick
// its identity with X-Forwarded-For, with no trusted proxies or with others.
func TestForgedForwardedForIsIgnored(t *testing.T) {
	for _, tt := range []struct {
		name    string
		trusted []netip.Prefix
	}{
		{"no trusted proxies", nil},
		{"other trusted proxies", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.TrustedProxies = tt.trusted })
			throttled := false
			for i := range 40 {
				throttled = throttled || e.badLogin(fmt.Sprintf("10.1.2.%d, 198.51.100.%d", i, i)) == http.StatusTooManyRequests
			}
			if !throttled {
				t.Error("40 bad logins, each with another X-Forwarded-For: never a 429")
			}
		})
	}
}

func TestClientAddress(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct", "198.51.100.1:5000", nil, "198.51.100.1"},
		{"direct, header ignored", "198.51.100.1:5000", []string{"203.0.113.7"}, "198.51.100.1"},
		{"proxy without header", "10.0.0.2:5000", nil, "10.0.0.2"},
		{"proxy", "10.0.0.2:5000", []string{"203.0.113.7"}, "203.0.113.7"},
		{"forged left hop", "10.0.0.2:5000", []string{"1.2.3.4, 203.0.113.7"}, "203.0.113.7"},
		{"two trusted hops", "10.0.0.2:5000", []string{"203.0.113.7, 10.9.9.9"}, "203.0.113.7"},
		{"header repeated", "10.0.0.2:5000", []string{"1.2.3.4", "203.0.113.7"}, "203.0.113.7"},
		{"hop with port", "10.0.0.2:5000", []string{"203.0.113.7:443"}, "203.0.113.7"},
		{"IPv6 hop", "[fd00::1]:5000", []string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{"IPv4-mapped peer", "[::ffff:10.0.0.2]:5000", []string{"203.0.113.7"}, "203.0.113.7"},
		{"garbage right of the client", "10.0.0.2:5000", []string{"203.0.113.7, nonsense"}, "10.0.0.2"},
		{"garbage behind a trusted hop", "10.0.0.2:5000", []string{"nonsense, 10.0.0.3"}, "10.0.0.3"},
		{"all trusted", "10.0.0.2:5000", []string{"10.0.0.4, 10.0.0.3"}, "10.0.0.4"},
	}
	extract := clientAddress(trusted)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := extract(r); got != tt.want {
				t.Errorf("clientAddress(%q, X-Forwarded-For %q) = %q, want %q", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}

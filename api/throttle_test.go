package api

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v5/middleware"
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

// noRefill gives the failed-authentication budget a burst of 20 that does not refill
// while a test runs, so that no step depends on how fast the machine is.
func noRefill(o *Options) {
	o.failedAuth = middleware.RateLimiterMemoryStoreConfig{Rate: 1e-9, Burst: 20, ExpiresIn: time.Hour}
}

// TestFailedLoginsAreRateLimited: the review page's failed logins count against the
// same limiter as bad bearer tokens: 100 parallel bad logins get 429s.
func TestFailedLoginsAreRateLimited(t *testing.T) {
	e := newEnv(t, noRefill)
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
	if counts[http.StatusUnauthorized] != 20 || counts[http.StatusTooManyRequests] != 80 {
		t.Errorf("100 parallel bad logins: statuses %v, want 20 401s (the budget) and 80 429s", counts)
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
	e := newEnv(t, noRefill, func(o *Options) {
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
			e := newEnv(t, noRefill, func(o *Options) { o.TrustedProxies = tt.trusted })
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
		{"IPv6 hop: its /64", "[fd00::1]:5000", []string{"[2001:db8::7]:443"}, "2001:db8::/64"},
		{"IPv6 peer: its /64", "[2001:db8:1:2:3:4:5:6]:5000", nil, "2001:db8:1:2::/64"},
		{"IPv6 peer with a zone", "[fe80::1%eth0]:5000", nil, "fe80::/64"},
		{"trusted IPv6 hops, full addresses", "[fd00::1]:5000", []string{"2001:db8:9::1, fd00::2"}, "2001:db8:9::/64"},
		{"IPv4-mapped peer", "[::ffff:10.0.0.2]:5000", []string{"203.0.113.7"}, "203.0.113.7"},
		{"IPv4-mapped client", "[::ffff:198.51.100.1]:5000", nil, "198.51.100.1"},
		{"IPv4-mapped hop", "10.0.0.2:5000", []string{"::ffff:203.0.113.7"}, "203.0.113.7"},
		{"unreadable peer", "somewhere", nil, "somewhere"},
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

// TestIPv6ClientsAreLimitedByTheir64: the failed-authentication limit keys an IPv6
// client by its /64, which one holder usually has whole: a second address of the same
// /64 gets a 429 once the first has used the budget; another /64 has its own. IPv4
// clients (also when written IPv4-mapped) keep one budget per address.
func TestIPv6ClientsAreLimitedByTheir64(t *testing.T) {
	// A budget of 3 that does not refill while the test runs, so that no step
	// depends on how fast the machine is. The key is what is under test.
	const budget = 3
	e := newEnv(t, func(o *Options) {
		o.failedAuth = middleware.RateLimiterMemoryStoreConfig{Rate: 1e-9, Burst: budget, ExpiresIn: time.Hour}
	})
	login := func(remote string) int {
		t.Helper()
		req := httptest.NewRequest("POST", "/ui/login", strings.NewReader(url.Values{"token": {"afx_guess"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	for _, first := range []string{"[2001:db8:1:2::1]:40000", "198.51.100.1:40000"} {
		for i := range budget {
			if got := login(first); got != http.StatusUnauthorized {
				t.Fatalf("bad login %d of %s: %d, want 401 (within the budget)", i+1, first, got)
			}
		}
	}
	tests := []struct {
		name, remote string
		want         int
	}{
		{"the same address", "[2001:db8:1:2::1]:40001", http.StatusTooManyRequests},
		{"another address of the same /64", "[2001:db8:1:2:ffff:ffff:ffff:fffe]:40000", http.StatusTooManyRequests},
		{"the next /64", "[2001:db8:1:3::1]:40000", http.StatusUnauthorized},
		{"another /64 of the same /48", "[2001:db8:1:ffff::1]:40000", http.StatusUnauthorized},
		{"the IPv4 address", "198.51.100.1:40001", http.StatusTooManyRequests},
		{"the IPv4 address, IPv4-mapped", "[::ffff:198.51.100.1]:40000", http.StatusTooManyRequests},
		{"the next IPv4 address", "198.51.100.2:40000", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		if got := login(tt.remote); got != tt.want {
			t.Errorf("%s (%s) after %d bad logins: %d, want %d", tt.name, tt.remote, budget, got, tt.want)
		}
	}
}

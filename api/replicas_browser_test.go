package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/ledger"
)

// roundRobin is a reverse proxy on its own listener that sends each request to the
// next of its backends in turn, as a Service without session affinity may, and
// remembers which backend answered what. Assets (the stylesheet, the favicon) go to
// the next backend without moving the turn on, so that the pages themselves — each
// with the session cookie, each form post with a CSRF token from the page before —
// alternate strictly, whatever the browser fetches besides.
type roundRobin struct {
	url      string
	backends []*httputil.ReverseProxy

	mu   sync.Mutex
	next int
	log  []served
}

// served is one request through the proxy.
type served struct {
	Method, Path string
	Replica      int
	Status       int
}

func newRoundRobin(t *testing.T, backends ...string) *roundRobin {
	t.Helper()
	rr := &roundRobin{}
	for _, b := range backends {
		u, err := url.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		rr.backends = append(rr.backends, httputil.NewSingleHostReverseProxy(u))
	}
	srv := httptest.NewServer(rr)
	t.Cleanup(srv.Close)
	rr.url = srv.URL
	return rr
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rr.mu.Lock()
	i := rr.next
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") && r.URL.Path != "/favicon.ico" {
		rr.next = (rr.next + 1) % len(rr.backends)
	}
	rr.mu.Unlock()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	rr.backends[i].ServeHTTP(sw, r)
	rr.mu.Lock()
	rr.log = append(rr.log, served{r.Method, r.URL.Path, i, sw.status})
	rr.mu.Unlock()
}

// pages is what the proxy served so far, one line a request.
func (rr *roundRobin) pages() string {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	var b strings.Builder
	for _, s := range rr.log {
		fmt.Fprintf(&b, "  %s %s -> replica %d: %d\n", s.Method, s.Path, s.Replica, s.Status)
	}
	return b.String()
}

// servedBy counts, per replica, the requests of a logged-in page (not the login
// form or the stylesheet) that it answered with 200 or a redirect.
func (rr *roundRobin) servedBy() map[int]int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	out := map[int]int{}
	for _, s := range rr.log {
		if !strings.HasPrefix(s.Path, "/ui/login") && !strings.HasPrefix(s.Path, "/ui/static/") &&
			(s.Status == http.StatusOK || s.Status == http.StatusSeeOther) {
			out[s.Replica]++
		}
	}
	return out
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// replica starts another server like e's on its own listener, with its own handle
// on e's ledger file and its own reading of e's token file: a second pod.
func (e *env) replica() string {
	e.t.Helper()
	store, err := ledger.Open(context.Background(), filepath.Join(filepath.Dir(e.tokenFile), "ledger.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = store.Close() })
	ts, err := auth.OpenStore(e.tokenFile)
	if err != nil {
		e.t.Fatal(err)
	}
	o := e.opts
	o.Ledger, o.Review, o.Auth, o.Metrics = store, newReview(e.t, store), auth.NewAuthenticator(ts.Tokens()), nil
	s, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	e.t.Cleanup(srv.Close)
	return srv.URL
}

// TestReviewPageOnTwoReplicasInChromium: two replicas with the same session key and
// one ledger, behind a proxy that alternates between them on every request, as
// deploy/ runs them behind a Service without session affinity. A reviewer logs in,
// opens the queue, approves one fix and rejects another through the forms, and logs
// out; every step works whichever replica serves it. Before, a login lived in the
// memory of the replica that made it, and the other sent the browser back to the
// login form.
func TestReviewPageOnTwoReplicasInChromium(t *testing.T) {
	b := startBrowser(t, 90*time.Second)
	e := newEnv(t, func(o *Options) { o.SessionKeys = [][]byte{key(42)} })
	first := e.pending(oomEvent)
	second := e.pending(strings.Replace(oomEvent, "ev-oom-1", "ev-oom-2", 1))
	rr := newRoundRobin(t, e.url, e.replica())
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Logf("the proxy served:\n%s", rr.pages())
			b.fatal(name, err)
		}
	}
	pending := func(want string) {
		t.Helper()
		if got := b.text("#pending-count"); got != want {
			t.Errorf("pending count = %q, want %s\nthe proxy served:\n%s", got, want, rr.pages())
		}
	}

	step("open the queue", chromedp.Navigate(rr.url+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")))
	step("log in",
		chromedp.SendKeys(chromedp.ID("token"), e.tokens[auth.Approver]),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("pending-count")))
	pending("2")
	for range 2 { // the other replica, then the first
		step("reload the queue", chromedp.Navigate(rr.url+"/ui/"), chromedp.WaitVisible(chromedp.ID("pending-count")))
		pending("2")
	}

	article := "#fix-" + first.EventID
	step("approve the first fix",
		chromedp.SendKeys(chromedp.CSS(article+" form.approve input[name=reason]"), "more memory is right"),
		chromedp.Click(chromedp.CSS(article+" button.approve-btn")),
		chromedp.WaitVisible(chromedp.ID("done")))
	if got := b.text("#state"); got != "approved" {
		t.Errorf("state after approving = %q, want approved", got)
	}
	step("back to the queue", chromedp.Navigate(rr.url+"/ui/"), chromedp.WaitVisible(chromedp.ID("pending-count")))
	pending("1")

	article = "#fix-" + second.EventID
	step("reject the second fix",
		chromedp.SendKeys(chromedp.CSS(article+" form.reject input[name=reason]"), "the loader leaks; fix the code"),
		chromedp.Click(chromedp.CSS(article+" button.reject-btn")),
		chromedp.WaitVisible(chromedp.ID("done")))
	if got := b.text("#state"); got != "rejected" {
		t.Errorf("state after rejecting = %q, want rejected", got)
	}
	step("back to the queue again", chromedp.Navigate(rr.url+"/ui/"), chromedp.WaitVisible(chromedp.ID("pending-count")))
	pending("0")

	step("log out", chromedp.Click(chromedp.CSS("form.who button")), chromedp.WaitVisible(chromedp.ID("token")))
	for range 2 { // logged out on both
		step("the queue after logging out", chromedp.Navigate(rr.url+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")))
	}

	for _, c := range []struct {
		id     string
		want   ledger.State
		action string
	}{{first.EventID, ledger.Approved, "approve"}, {second.EventID, ledger.Rejected, "reject"}} {
		got, err := e.store.Get(t.Context(), c.id)
		if err != nil {
			t.Fatal(err)
		}
		if last := got.Audit[len(got.Audit)-1]; got.State != c.want || last.Actor != "val" || last.Action != c.action {
			t.Errorf("%s in the ledger: %s, last audit %+v; want %s by val", c.id, got.State, last, c.want)
		}
	}
	if by := rr.servedBy(); by[0] < 3 || by[1] < 3 {
		t.Errorf("logged-in pages served per replica: %v, want both at least 3\n%s", by, rr.pages())
	}
}

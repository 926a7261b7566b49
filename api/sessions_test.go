package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// clock is a settable time for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// noRedirects is a client that shows redirects instead of following them.
func (e *env) noRedirects() *http.Client {
	c := *e.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// login logs in to the review page as role and returns the session cookie's value.
func (e *env) login(role auth.Role) string {
	e.t.Helper()
	resp, err := e.noRedirects().PostForm(e.url+"/ui/login", url.Values{"token": {e.tokens[role]}})
	if err != nil {
		e.t.Fatal(err)
	}
	_ = resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && resp.StatusCode == http.StatusSeeOther {
			return c.Value
		}
	}
	e.t.Fatalf("login as %s: %d, no session cookie", role, resp.StatusCode)
	return ""
}

// page gets path of the review page with the session cookie and returns the status
// and the page.
func (e *env) page(session, path string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url+path, nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: session})
	resp, err := e.noRedirects().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// countingLedger counts the rows the history page reads.
type countingLedger struct {
	historyLedger
	mu   sync.Mutex
	rows int
}

func (c *countingLedger) List(ctx context.Context, f ledger.Filter) ([]ledger.Remediation, error) {
	out, err := c.historyLedger.List(ctx, f)
	c.mu.Lock()
	c.rows += len(out)
	c.mu.Unlock()
	return out, err
}

func (c *countingLedger) Approvers(ctx context.Context, ids []string) (map[string]string, error) {
	out, err := c.historyLedger.Approvers(ctx, ids)
	c.mu.Lock()
	c.rows += len(out)
	c.mu.Unlock()
	return out, err
}

func (c *countingLedger) AttemptOutcomes(ctx context.Context, ids []string) (map[string]failure.Outcome, error) {
	out, err := c.historyLedger.AttemptOutcomes(ctx, ids)
	c.mu.Lock()
	c.rows += len(out)
	c.mu.Unlock()
	return out, err
}

// finished records n remediations that autofix fixed (succeeded), every third one
// approved by a person.
func (e *env) finished(n int) {
	e.t.Helper()
	ctx := context.Background()
	for i := range n {
		id := fmt.Sprintf("ev-done-%03d", i)
		r := e.pending(strings.Replace(oomEvent, "ev-oom-1", id, 1))
		o, _ := r.Recommendation.ChosenOption()
		actor := "policy"
		if i%3 == 0 {
			actor = "val"
		}
		at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
		if err := e.store.Approve(ctx, id, ledger.Attempt{ChainID: "chain-" + id, Number: 2, JobName: "job-" + id, Resources: o.Resources}, actor, "", at); err != nil {
			e.t.Fatal(err)
		}
		if err := e.store.Transition(ctx, id, ledger.Approved, ledger.Submitted, "remediate", "", at); err != nil {
			e.t.Fatal(err)
		}
		if err := e.store.Finish(ctx, id, ledger.Succeeded, failure.Outcome{Attempt: 2, Resources: o.Resources}, "remediate", "", at); err != nil {
			e.t.Fatal(err)
		}
	}
}

// TestHistoryReadsABoundedPage: the history page reads a page of fixes and the
// savings window, not the whole ledger, and pages with a cursor.
func TestHistoryReadsABoundedPage(t *testing.T) {
	e := newEnv(t)
	const n, window = 120, 20
	e.finished(n)
	counter := &countingLedger{historyLedger: e.srv.ui.history}
	e.srv.ui.history, e.srv.ui.savingsWindow = counter, window
	session := e.login(auth.Viewer)

	status, page := e.page(session, "/ui/history")
	if status != http.StatusOK {
		t.Fatalf("GET /ui/history: %d", status)
	}
	if max := historyPage + 3*window; counter.rows > max {
		t.Errorf("GET /ui/history with %d fixes in the ledger read %d rows, want at most %d", n, counter.rows, max)
	}
	if got := strings.Count(page, `<td class="st-succeeded">`); got != historyPage {
		t.Errorf("the first page shows %d fixes, want %d", got, historyPage)
	}
	if !strings.Contains(page, `id="savings-window"`) || !strings.Contains(page, fmt.Sprintf(`<b id="fixed">%d</b>`, window)) {
		t.Errorf("the savings panel does not say it sums the latest %d fixes", window)
	}
	// Follow the cursor to the end.
	seen := strings.Count(page, `<td class="st-succeeded">`)
	for pages := 1; strings.Contains(page, `id="older"`); pages++ {
		if pages > n/historyPage+1 {
			t.Fatal("the older link never ends")
		}
		i := strings.Index(page, `href="/ui/history?after=`)
		href := page[i+len(`href="`):]
		href = strings.ReplaceAll(href[:strings.Index(href, `"`)], "&amp;", "&")
		if status, page = e.page(session, href); status != http.StatusOK {
			t.Fatalf("GET %s: %d", href, status)
		}
		seen += strings.Count(page, `<td class="st-succeeded">`)
	}
	if seen != n {
		t.Errorf("the pages show %d fixes in all, want %d", seen, n)
	}
	if status, _ := e.page(session, "/ui/history?after=no-such-id"); status != http.StatusNotFound {
		t.Errorf("an unknown cursor: %d, want 404", status)
	}
}

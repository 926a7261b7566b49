package api

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/ledger"
)

// chromiumPath is Debian's Chromium, which the browser test drives headless.
const chromiumPath = "/usr/bin/chromium"

// chromiumOptions are the allocator options of the browser test: exactly the flags
// below, no more. chromedp.Headless and chromedp.DisableGPU would add flags of their
// own (hide-scrollbars, mute-audio, enable-unsafe-swiftshader), and the
// DefaultExecAllocatorOptions many more, so each flag is set by name. The flags that
// stop background traffic matter: this machine has no internet, and without them
// Chromium logs refused connections. chromedp adds --remote-debugging-pipe and the
// first page, about:blank, itself.
func chromiumOptions(userDataDir string) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(userDataDir),
	}
}

// tab is one browser tab of the test. Each step has its own timeout under the
// test's, so a missing element fails that step with the page it was on, not the
// whole test with a bare deadline.
type tab struct {
	t   *testing.T
	ctx context.Context
}

const stepTimeout = 15 * time.Second

// do runs the actions of one step and fails the test with what the page showed.
func (b tab) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fatal(step, err)
	}
}

// text is the rendered text of the first element sel matches.
func (b tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.fatal("read "+sel, err)
	}
	return strings.TrimSpace(s)
}

// count is how many elements sel matches now; it does not wait for any.
func (b tab) count(sel string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	if err != nil {
		b.fatal("count "+sel, err)
	}
	return n
}

func (b tab) fatal(step string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	where, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	if len(body) > 2000 {
		body = body[:2000] + "…"
	}
	b.t.Fatalf("%s: %v\npage %s shows:\n%s", step, err, where, body)
}

// logIn fills the login form, which the tab shows, with token.
func (b tab) logIn(token string) {
	b.t.Helper()
	b.do("log in",
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("pending-count")))
}

// startBrowser starts headless Chromium for the test (or skips the test without
// one, unless AUTOFIX_REQUIRE_BROWSER=1) and returns its tab, whose context has the
// test's timeout.
func startBrowser(t *testing.T, timeout time.Duration) tab {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("AUTOFIX_REQUIRE_BROWSER") == "1" {
			t.Fatalf("AUTOFIX_REQUIRE_BROWSER=1 and no browser: %v", err)
		}
		t.Skipf("no browser (set AUTOFIX_REQUIRE_BROWSER=1 to fail instead): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromiumOptions(t.TempDir())...)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	// The first action starts the browser and binds it to browserCtx, which has the
	// test's timeout; each step after it has its own.
	if err := chromedp.Do(browserCtx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return tab{t: t, ctx: browserCtx}
}

// TestReviewPageInChromium walks the review page the way on-call uses it, in a real
// browser: log in, read a fix, approve it, and check that a viewer cannot.
func TestReviewPageInChromium(t *testing.T) {
	b := startBrowser(t, 60*time.Second)
	e := newEnv(t)
	first := e.pending(oomEvent)
	second := e.pending(strings.Replace(oomEvent, "ev-oom-1", "ev-oom-2", 1))
	article := "#fix-" + first.EventID

	// 1. No session: the queue sends the browser to the login form; a wrong token
	// says so.
	b.do("open the queue", chromedp.Navigate(e.url+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")))
	if where, err := chromedp.Run(b.ctx, chromedp.Location()); err != nil || !strings.HasPrefix(where, e.url+"/ui/login") {
		t.Errorf("GET /ui/ without a session ended on %s (%v), want the login form", where, err)
	}
	b.do("log in with a wrong token",
		chromedp.SendKeys(chromedp.ID("token"), "afx_not-a-token"),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("login-error")))

	// 2. The approver sees both fixes and what each is about.
	b.logIn(e.tokens[auth.Approver])
	if got := b.text("#pending-count"); got != "2" {
		t.Errorf("pending count = %q, want 2", got)
	}
	b.do("see the fix", chromedp.WaitVisible(chromedp.CSS(article)))
	if got := b.text(article + " h2"); !strings.Contains(got, "resnet50-train-7") {
		t.Errorf("fix heading = %q, want the job resnet50-train-7", got)
	}
	if got := b.text(article + " .cat"); got != "oom_memory" {
		t.Errorf("fix category = %q, want oom_memory", got)
	}
	evidence := first.Recommendation.Classification.Evidence
	if got := b.text(article + " .evidence pre"); len(evidence) == 0 || !strings.Contains(got, strings.TrimSpace(evidence[0])) {
		t.Errorf("evidence shown = %q, want the classifier's %q", got, evidence)
	}
	if got := b.count(article + " svg.chart circle.chosen"); got != 1 {
		t.Errorf("chart has %d chosen rings, want 1", got)
	}
	if got, want := b.count(article+" svg.chart circle.opt"), len(first.Recommendation.Options); got != want {
		t.Errorf("chart has %d option points, want %d", got, want)
	}
	if path := os.Getenv("AUTOFIX_SCREENSHOT"); path != "" {
		shotCtx, cancelShot := context.WithTimeout(b.ctx, stepTimeout)
		png, err := chromedp.Run(shotCtx, chromedp.FullScreenshot(100)) // 100: PNG
		cancelShot()
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote the approver's queue to %s (%d bytes)", path, len(png))
	}

	// 3. Approve the first fix with a note: the result page and the ledger agree.
	const note = "peaks at 15.9Gi; more memory is right"
	b.do("approve",
		chromedp.SendKeys(chromedp.CSS(article+" form.approve input[name=reason]"), note),
		chromedp.Click(chromedp.CSS(article+" button.approve-btn")),
		chromedp.WaitVisible(chromedp.ID("done")))
	if got := b.text("#state"); got != "approved" {
		t.Errorf("state after approving = %q, want approved", got)
	}
	got, err := e.store.Get(t.Context(), first.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if last := got.Audit[len(got.Audit)-1]; got.State != ledger.Approved || last.Actor != "val" || last.Action != "approve" ||
		!strings.Contains(last.Detail, "15.9Gi") {
		t.Errorf("ledger after approving: %s, last audit %+v; want approved by val with the note", got.State, last)
	}
	b.do("back to the queue", chromedp.Navigate(e.url+"/ui/"), chromedp.WaitVisible(chromedp.ID("pending-count")))
	if got := b.text("#pending-count"); got != "1" {
		t.Errorf("pending count after approving = %q, want 1", got)
	}
	if n := b.count(article); n != 0 {
		t.Errorf("the approved fix is still in the queue (%d)", n)
	}

	// 4. A viewer sees the remaining fix and no way to approve it; forging the
	// form anyway is refused and changes nothing.
	b.do("log out", chromedp.Click(chromedp.CSS("form.who button")), chromedp.WaitVisible(chromedp.ID("token")))
	b.logIn(e.tokens[auth.Viewer])
	other := "#fix-" + second.EventID
	b.do("see the other fix as a viewer", chromedp.WaitVisible(chromedp.CSS(other+" p.readonly")))
	if n := b.count(other + " button.approve-btn"); n != 0 {
		t.Errorf("a viewer sees %d approve buttons, want none", n)
	}
	forge := fmt.Sprintf(`(() => {
		const f = document.createElement("form");
		f.method = "post";
		f.action = %q;
		const fields = {csrf: document.querySelector("form.who input[name=csrf]").value, reason: "a viewer tries"};
		for (const [name, value] of Object.entries(fields)) {
			const field = document.createElement("input");
			field.type = "hidden";
			field.name = name;
			field.value = value;
			f.appendChild(field);
		}
		document.body.appendChild(f);
		f.submit();
	})()`, "/ui/remediations/"+second.EventID+"/approve")
	b.do("post the approve form as a viewer",
		chromedp.Evaluate[chromedp.Void](forge),
		chromedp.WaitVisible(chromedp.ID("error")))
	if h := b.text("section.errorpage h1"); !strings.HasPrefix(h, "403") {
		t.Errorf("a viewer approving got %q, want a 403 page", h)
	}
	got, err = e.store.Get(t.Context(), second.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ledger.PendingReview {
		t.Errorf("after a viewer's approve the fix is %s, want %s", got.State, ledger.PendingReview)
	}
}

package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// TestReviewPageCorrectionForm: the page shows approvers the form (the taxonomy's
// categories, the current label selected), a post needs the session's CSRF token, and
// a good one is recorded and shown; a viewer sees no form.
func TestReviewPageCorrectionForm(t *testing.T) {
	e := newEnv(t)
	r := e.pending(oomEvent)
	page := "/ui/remediations/" + r.EventID
	approver, viewer := e.login(auth.Approver), e.login(auth.Viewer)
	status, body := e.page(approver, page)
	if status != http.StatusOK || !strings.Contains(body, `action="/ui/remediations/`+r.EventID+`/correct"`) {
		t.Fatalf("the approver's page: %d, no correction form", status)
	}
	for _, c := range failure.Categories() {
		if !strings.Contains(body, `<option value="`+string(c)+`"`) {
			t.Errorf("the correction form lacks the category %s", c)
		}
	}
	if !strings.Contains(body, `<option value="oom_memory" selected>`) || !strings.Contains(body, `value="true" checked>`) {
		t.Errorf("the form does not start from the classification (oom_memory, retryable)")
	}
	if _, vb := e.page(viewer, page); strings.Contains(vb, `/correct"`) {
		t.Error("a viewer's page has the correction form")
	}

	// post posts the form and returns the status and where it redirects to.
	post := func(csrf string, form url.Values) (int, string) {
		t.Helper()
		form.Set("csrf", csrf)
		req, _ := http.NewRequest("POST", e.url+page+"/correct", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: approver})
		resp, err := e.noRedirects().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	if status, _ := post("", url.Values{"category": {"user_code"}}); status != http.StatusForbidden {
		t.Errorf("a correction without the CSRF token: %d, want 403", status)
	}
	csrf := hiddenCSRF(t, body)
	if status, _ := post(csrf, url.Values{"category": {"oom"}}); status != http.StatusBadRequest {
		t.Errorf("a correction to an unknown category: %d, want 400", status)
	}
	if status, _ := post(csrf, url.Values{"category": {"user_code"}, "retryable": {"maybe"}}); status != http.StatusBadRequest {
		t.Errorf("a correction with retryable=maybe: %d, want 400", status)
	}
	if got := mustGet(t, e, r.EventID); got.Correction != nil {
		t.Fatalf("refused posts recorded %+v", got.Correction)
	}
	status, where := post(csrf, url.Values{"category": {"user_code"}, "note": {"a code bug"}}) // the unchecked box sends nothing
	if status != http.StatusSeeOther || where != page+"?done=corrected" {
		t.Fatalf("a good correction: %d to %q, want 303 to the page", status, where)
	}
	got := mustGet(t, e, r.EventID).Correction
	if got == nil || got.Category != failure.UserCode || got.Retryable || got.Actor != "val" || got.Note != "a code bug" {
		t.Errorf("the recorded correction: %+v, want user_code, not retryable, by val, with the note", got)
	}
	_, body = e.page(approver, page+"?done=corrected")
	if !strings.Contains(body, `id="correction"`) || !strings.Contains(body, `<option value="user_code" selected>`) ||
		strings.Contains(body, `value="true" checked>`) {
		t.Errorf("the page after the correction does not show it, or the form does not start from it")
	}
}

// TestCorrectionInChromium corrects a classification on the review page in a real
// browser: the approver picks another category, unticks "a retry can fix it", adds
// a note and submits; the page and the ledger show the correction, and a viewer
// sees it without the form.
func TestCorrectionInChromium(t *testing.T) {
	b := startBrowser(t, 60*time.Second)
	e := newEnv(t)
	r := e.pending(oomEvent)
	page := e.url + "/ui/remediations/" + r.EventID

	b.do("open the fix", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.ID("token")))
	b.do("log in as an approver",
		chromedp.SendKeys(chromedp.ID("token"), e.tokens[auth.Approver]),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS("form.correct")))
	if n := b.count("#correction"); n != 0 {
		t.Errorf("an uncorrected fix shows %d corrections", n)
	}
	checked := func() bool {
		t.Helper()
		return b.count("form.correct input[name=retryable]:checked") == 1
	}
	if !checked() {
		t.Error(`"a retry can fix it" starts unticked; the classification says oom_memory, retryable`)
	}

	const note = "the data loader leaks; more memory only delays it"
	b.do("correct the classification",
		chromedp.SetValue(chromedp.CSS("form.correct select[name=category]"), string(failure.UserCode)),
		chromedp.Click(chromedp.CSS("form.correct input[name=retryable]")),
		chromedp.SendKeys(chromedp.CSS("form.correct input[name=note]"), note),
		chromedp.Click(chromedp.CSS("form.correct button.correct-btn")),
		chromedp.WaitVisible(chromedp.ID("done")))
	if got := b.text("#done"); !strings.Contains(got, "user_code") {
		t.Errorf("the banner after correcting = %q, want it to name user_code", got)
	}
	if got := b.text("#correction"); !strings.Contains(got, "val") || !strings.Contains(got, "user_code") ||
		!strings.Contains(got, "not retryable") || !strings.Contains(got, note) {
		t.Errorf("the correction shown = %q, want val's user_code, not retryable, with the note", got)
	}
	if checked() {
		t.Error(`after the correction "a retry can fix it" is ticked; the correction says not retryable`)
	}
	got, err := e.store.Get(t.Context(), r.EventID)
	if err != nil {
		t.Fatal(err)
	}
	c := got.Correction
	if c == nil || c.Category != failure.UserCode || c.Retryable || c.Actor != "val" || c.Note != note || got.State != ledger.PendingReview {
		t.Errorf("the ledger after correcting: %+v, state %s; want val's user_code, not retryable, with the note, still pending_review",
			c, got.State)
	}

	// A viewer sees the correction, and no form.
	b.do("log out", chromedp.Click(chromedp.CSS("form.who button")), chromedp.WaitVisible(chromedp.ID("token")))
	b.logIn(e.tokens[auth.Viewer])
	b.do("open the fix as a viewer", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.ID("correction")))
	if n := b.count("form.correct"); n != 0 {
		t.Errorf("a viewer sees %d correction forms, want none", n)
	}
}

package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/notify"
)

// TestReviewLinkOpensTheItemAfterLogin: the link an alert carries sends a browser
// without a session to the login form, and from it to the fix; opening it, or a
// URL made from it, changes nothing: deciding takes a logged-in approver's form
// with its CSRF token, a POST.
func TestReviewLinkOpensTheItemAfterLogin(t *testing.T) {
	for _, tt := range []struct{ name, id string }{{"plain", "ev-oom-1"}, {"slash and query characters", "ev/oom 1?x#y%2F"}} {
		t.Run(tt.name, func(t *testing.T) { testReviewLink(t, tt.id) })
	}
}

func testReviewLink(t *testing.T, id string) {
	e := newEnv(t)
	r := e.pending(strings.Replace(oomEvent, `"id":"ev-oom-1"`, `"id":"`+id+`"`, 1))
	link := (&notify.Options{ExternalURL: e.url + "/"}).ReviewLink(r.EventID)
	path := strings.TrimPrefix(link, e.url)
	client := e.noRedirects()

	resp, err := client.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || loc != "/ui/login?next="+url.QueryEscape(path) {
		t.Fatalf("the link without a session: %d to %q, want 303 to the login form with next=%s", resp.StatusCode, loc, path)
	}
	resp, err = client.Get(e.url + loc)
	if err != nil {
		t.Fatal(err)
	}
	form, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(form), `name="next" value="`+path+`"`) {
		t.Fatalf("the login form: %d, want it to carry next=%s", resp.StatusCode, path)
	}
	resp, err = client.PostForm(e.url+"/ui/login", url.Values{"token": {e.tokens[auth.Approver]}, "next": {path}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != path {
		t.Fatalf("login: %d to %q, want 303 to the fix, %s", resp.StatusCode, resp.Header.Get("Location"), path)
	}
	var session string
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			session = c.Value
		}
	}
	if status, page := e.page(session, path); status != http.StatusOK || !strings.Contains(page, r.JobName) {
		t.Fatalf("the fix's page after login: %d, want 200 with its job %s", status, r.JobName)
	}

	// Nothing that a link can do decides: not the link with a query, not a GET of
	// the forms' targets; not the API's by GET either.
	if status, _ := e.page(session, path+"?approve=1&option=0"); status != http.StatusOK {
		t.Errorf("the link with a query: %d, want the fix's page (the query ignored)", status)
	}
	for _, p := range []string{path + "/approve", path + "/reject", path + "/approve?option=0"} {
		if status, _ := e.page(session, p); status != http.StatusMethodNotAllowed && status != http.StatusNotFound {
			t.Errorf("GET %s as a logged-in approver: %d, want 404 or 405", p, status)
		}
	}
	if status, _, _ := e.call("GET", "/v1/remediations/"+url.PathEscape(r.EventID)+"/approve", auth.Approver, ""); status != http.StatusMethodNotAllowed &&
		status != http.StatusNotFound {
		t.Errorf("GET of the API's approve: %d, want 404 or 405", status)
	}
	got, err := e.store.Get(context.Background(), r.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ledger.PendingReview {
		t.Errorf("after following the link: state %s, want it still pending_review", got.State)
	}
}

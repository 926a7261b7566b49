package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/registry"
)

// TestReviewPageModels: everyone sees the registry's versions and which is active;
// admins alone get the promote and roll-back forms, whose posts need the session's
// CSRF token and go through the API's gates: refused unless forced with a reason;
// a rollback needs a reason.
func TestReviewPageModels(t *testing.T) {
	e := newEnv(t)
	reg := e.opts.ModelRegistry.(*registry.Registry)
	if _, err := reg.Register(context.Background(), constantModels(t, 1), registry.Registration{Actor: "ada", Note: "a constant"}); err != nil {
		t.Fatal(err)
	}
	admin, approver, viewer := e.login(auth.Admin), e.login(auth.Approver), e.login(auth.Viewer)
	status, body := e.page(admin, "/ui/models")
	if status != http.StatusOK || !strings.Contains(body, `Active version: <strong>1</strong>`) || !strings.Contains(body, `id="v2"`) ||
		!strings.Contains(body, `action="/ui/models/2/promote"`) || strings.Contains(body, `action="/ui/models/1/promote"`) ||
		strings.Contains(body, `/rollback"`) || !strings.Contains(body, "a constant") {
		t.Fatalf("the admin's models page: %d\n%s\nwant versions 1 (active) and 2, a promote form for 2 only, no rollback", status, body)
	}
	for name, cookie := range map[string]string{"approver": approver, "viewer": viewer} {
		if _, b := e.page(cookie, "/ui/models"); !strings.Contains(b, `id="v2"`) || strings.Contains(b, "<form method=\"post\" action=\"/ui/models") {
			t.Errorf("the %s's models page: want the versions without a form", name)
		}
	}

	post := func(cookie, path, csrf string, form url.Values) (int, string) {
		t.Helper()
		form.Set("csrf", csrf)
		req, _ := http.NewRequest("POST", e.url+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		resp, err := e.noRedirects().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	csrf := hiddenCSRF(t, body)
	_, approverPage := e.page(approver, "/ui/models")
	for _, tc := range []struct {
		name         string
		cookie, csrf string
		path         string
		form         url.Values
		status       int
	}{
		{"without the CSRF token", admin, "", "/ui/models/2/promote", url.Values{"force": {"on"}, "reason": {"r"}}, http.StatusForbidden},
		{"by an approver", approver, hiddenCSRF(t, approverPage), "/ui/models/2/promote", url.Values{"force": {"on"}, "reason": {"r"}},
			http.StatusForbidden},
		{"past the gates unforced", admin, csrf, "/ui/models/2/promote", url.Values{}, http.StatusConflict},
		{"forced without a reason", admin, csrf, "/ui/models/2/promote", url.Values{"force": {"on"}}, http.StatusBadRequest},
		{"force=maybe", admin, csrf, "/ui/models/2/promote", url.Values{"force": {"maybe"}, "reason": {"r"}}, http.StatusBadRequest},
	} {
		if status, _ := post(tc.cookie, tc.path, tc.csrf, tc.form); status != tc.status {
			t.Errorf("a promotion %s: %d, want %d", tc.name, status, tc.status)
		}
	}
	if _, active, _ := reg.List(context.Background(), 1); active != 1 {
		t.Fatalf("refused posts made version %d active", active)
	}
	status, where := post(admin, "/ui/models/2/promote", csrf, url.Values{"force": {"on"}, "reason": {"no outcomes yet"}})
	if status != http.StatusSeeOther || where != "/ui/models?done=promoted#v2" {
		t.Fatalf("a forced promotion: %d to %q, want 303 to the models page", status, where)
	}
	_, body = e.page(admin, "/ui/models?done=promoted")
	if !strings.Contains(body, `id="done"`) || !strings.Contains(body, `Active version: <strong>2</strong>`) ||
		!strings.Contains(body, "no outcomes yet") || !strings.Contains(body, `action="/ui/models/1/rollback"`) {
		t.Errorf("the page after the promotion:\n%s\nwant 2 active, the promotion listed, a rollback form for 1", body)
	}
	if status, _ := post(admin, "/ui/models/1/rollback", csrf, url.Values{}); status != http.StatusBadRequest {
		t.Errorf("a rollback without a reason: %d, want 400", status)
	}
	status, where = post(admin, "/ui/models/1/rollback", csrf, url.Values{"reason": {"back to the default"}})
	if status != http.StatusSeeOther || where != "/ui/models?done=rolledback#v1" {
		t.Errorf("a rollback: %d to %q, want 303 to the models page", status, where)
	}
	if _, active, _ := reg.List(context.Background(), 1); active != 1 {
		t.Errorf("after the rollback version %d is active, want 1", active)
	}
}

// TestReviewPageModelsDrift: the models page compares what the models predicted of
// the latest ended attempts with what happened, and flags a gap too large to be
// chance; with nothing ended it says so.
func TestReviewPageModelsDrift(t *testing.T) {
	e := newEnv(t)
	viewer := e.login(auth.Viewer)
	if _, body := e.page(viewer, "/ui/models"); !strings.Contains(body, "No attempt has ended yet") {
		t.Fatalf("the models page of an empty ledger:\n%s\nwant it to say no attempt has ended", body)
	}
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 60 {
		id := fmt.Sprintf("ev-%02d", i)
		ev, err := failure.Decode([]byte(fmt.Sprintf(`{"id":%q,"job":{"name":"train-%02d","namespace":"ml","kind":"training"},"failure":{"reason":"OOMKilled","exitCode":137}}`, id, i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.Record(ctx, []ledger.Entry{{EventID: id, Event: &ev, ChainID: "ml/train-" + id, State: ledger.Approved,
			Reason: "auto", Actor: "policy", Attempt: &ledger.Attempt{Number: 2, JobName: "train-af2-" + id, Option: &failure.Option{PSuccess: 0.9}}}}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Transition(ctx, id, ledger.Approved, ledger.Submitted, "dispatcher", "", at); err != nil {
			t.Fatal(err)
		}
		to, o := ledger.Failed, failure.Outcome{}
		if i%2 == 0 {
			to, o = ledger.Succeeded, failure.Outcome{Succeeded: true}
		}
		if err := e.store.Finish(ctx, id, to, o, "watcher", "", at.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	_, body := e.page(viewer, "/ui/models")
	if !strings.Contains(body, "Over the latest 60 attempts that ended, the models\npredicted 90.0% success and 50.0% succeeded") ||
		!strings.Contains(body, "The models are drifting") {
		t.Errorf("the models page after 60 attempts predicted at 0.9 of which half succeeded:\n%s\nwant the rates and the drift flagged", body)
	}
}

// TestReviewPageShadow: an admin puts a version in shadow and stops it from the
// models page (with the session's CSRF token); the page then says which version is
// evaluated and how it scores; an approver cannot.
func TestReviewPageShadow(t *testing.T) {
	e := newEnv(t)
	reg := e.opts.ModelRegistry.(*registry.Registry)
	if _, err := reg.Register(context.Background(), constantModels(t, 1), registry.Registration{Actor: "ada"}); err != nil {
		t.Fatal(err)
	}
	admin, approver := e.login(auth.Admin), e.login(auth.Approver)
	post := func(cookie, path, csrf string) (int, string) {
		t.Helper()
		form := url.Values{"csrf": {csrf}, "reason": {"march data"}}
		req, _ := http.NewRequest("POST", e.url+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		resp, err := e.noRedirects().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	_, body := e.page(admin, "/ui/models")
	if !strings.Contains(body, "No version is evaluated in shadow") || !strings.Contains(body, `action="/ui/models/2/shadow"`) ||
		strings.Contains(body, `action="/ui/models/1/shadow"`) {
		t.Fatalf("the admin's page before: want no shadow, a shadow form for version 2 alone\n%s", body)
	}
	_, approverPage := e.page(approver, "/ui/models")
	if status, _ := post(approver, "/ui/models/2/shadow", hiddenCSRF(t, approverPage)); status != http.StatusForbidden {
		t.Errorf("an approver's shadow form: %d, want 403", status)
	}
	if status, _ := post(admin, "/ui/models/2/shadow", "forged"); status != http.StatusForbidden {
		t.Errorf("a shadow form without the session's CSRF token: %d, want 403", status)
	}
	csrf := hiddenCSRF(t, body)
	if status, loc := post(admin, "/ui/models/2/shadow", csrf); status != http.StatusSeeOther || loc != "/ui/models?done=shadowed#shadow" {
		t.Fatalf("the admin's shadow form: %d %s", status, loc)
	}
	_, body = e.page(admin, "/ui/models?done=shadowed")
	for _, want := range []string{"Version <strong>2</strong> is evaluated in shadow", "Version <strong>2</strong> predicts every live decision",
		"march data", `id="shadow-report"`, "On 0 decisions", `action="/ui/models/shadow/stop"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page after the shadow form lacks %q", want)
		}
	}
	if status, loc := post(admin, "/ui/models/shadow/stop", csrf); status != http.StatusSeeOther || loc != "/ui/models?done=unshadowed#shadow" {
		t.Fatalf("the admin's stop form: %d %s", status, loc)
	}
	if _, body = e.page(admin, "/ui/models"); !strings.Contains(body, "No version is evaluated in shadow") {
		t.Error("the page after the stop form still shows a shadow")
	}
	if status, _ := post(admin, "/ui/models/shadow/stop", csrf); status != http.StatusConflict {
		t.Errorf("stopping twice: %d, want 409", status)
	}
}

package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/autonomy"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// withAutonomy gives the server an autonomy service on its ledger, with the
// default thresholds.
func withAutonomy(o *Options) {
	th := policy.DefaultAutonomy()
	o.Autonomy = autonomy.New(autonomy.Options{Ledger: o.Ledger.(*ledger.Store), Thresholds: &th})
}

// reviewedFixes records n fixes of oomEvent's kind (oom_memory on
// ml/resnet50-train) that a person approved and that succeeded.
func (e *env) reviewedFixes(n int) {
	e.t.Helper()
	ctx := context.Background()
	for i := range n {
		ev := strings.Replace(strings.Replace(oomEvent, `"ev-oom-1"`, fmt.Sprintf(`"ev-oom-r%d"`, i), 1),
			`"resnet50-train-7"`, fmt.Sprintf(`"resnet50-train-r%d"`, i), 1)
		r := e.pending(ev)
		at := time.Now()
		opt, _ := r.Recommendation.ChosenOption()
		a := ledger.Attempt{Number: 2, JobName: fmt.Sprintf("resnet50-train-r%d-af2", i), Resources: opt.Resources, Params: opt.Params,
			Option: &opt}
		if err := e.store.Approve(ctx, r.EventID, a, "val", "", at); err != nil {
			e.t.Fatal(err)
		}
		if err := e.store.Transition(ctx, r.EventID, ledger.Approved, ledger.Submitted, "dispatcher", "", at); err != nil {
			e.t.Fatal(err)
		}
		if err := e.store.Finish(ctx, r.EventID, ledger.Succeeded, failure.Outcome{}, "watcher", "", at); err != nil {
			e.t.Fatal(err)
		}
	}
}

const resnet = `"category":"oom_memory","template":"ml/resnet50-train","jobKind":"training"`

// TestAutonomyRolesAndForgeries: viewers list; only admins grant and revoke, checked
// before the body is read; forged input is a 400 naming the field, an oversized
// body a 413; a kind that does not pass needs force and a reason; every response
// matches the document.
func TestAutonomyRolesAndForgeries(t *testing.T) {
	e := newEnv(t, withAutonomy)
	e.reviewedFixes(10)
	status, b, _ := e.call("GET", "/v1/autonomy", auth.Viewer, "")
	var l AutonomyList
	if status != http.StatusOK || json.Unmarshal(b, &l) != nil || len(l.Kinds) != 1 || !l.Kinds[0].Proposed ||
		l.Kinds[0].Template != "ml/resnet50-train" || l.Kinds[0].Approved != 10 || *l.Kinds[0].SuccessRate != 1 {
		t.Fatalf("GET /v1/autonomy: %d %s; want ml/resnet50-train proposed, 10 approved, all succeeded", status, b)
	}
	for _, role := range []auth.Role{auth.Viewer, auth.Approver} {
		for _, path := range []string{"/v1/autonomy:grant", "/v1/autonomy:revoke"} {
			status, b, _ := e.call("POST", path, role, `{`+resnet+`,"reason":"x"}`)
			wantError(t, status, b, http.StatusForbidden, "")
			status, b, _ = e.call("POST", path, role, strings.Repeat("x", 3<<20)) // the role comes before the body
			wantError(t, status, b, http.StatusForbidden, "")
		}
	}
	for _, tc := range []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"an unknown category", "/v1/autonomy:grant", `{"category":"oom","template":"ml/resnet50-train"}`, 400, "category"},
		{"unknown", "/v1/autonomy:grant", `{"category":"unknown","template":"ml/resnet50-train"}`, 400, "category"},
		{"user code", "/v1/autonomy:grant", `{"category":"user_code","template":"ml/resnet50-train"}`, 400, "category"},
		{"no namespace", "/v1/autonomy:grant", `{"category":"oom_memory","template":"resnet50-train"}`, 400, "template"},
		{"a script", "/v1/autonomy:grant", `{"category":"oom_memory","template":"ml/<script>"}`, 400, "template"},
		{"a control character", "/v1/autonomy:revoke", `{"category":"oom_memory","template":"ml/a\u0000b","reason":"x"}`, 400, "template"},
		{"a wrong type", "/v1/autonomy:grant", `{"category":"oom_memory","template":7}`, 400, "template"},
		{"no job kind", "/v1/autonomy:grant", `{"category":"oom_memory","template":"ml/resnet50-train"}`, 400, "jobKind"},
		{"a bogus job kind", "/v1/autonomy:revoke", `{"category":"oom_memory","template":"ml/resnet50-train","jobKind":"cron","reason":"x"}`,
			400, "jobKind"},
		{"an unknown field", "/v1/autonomy:grant", `{` + resnet + `,"team":"a"}`, 400, "team"},
		{"force on a revocation", "/v1/autonomy:revoke", `{` + resnet + `,"reason":"x","force":true}`, 400, "force"},
		{"a long reason", "/v1/autonomy:grant", `{` + resnet + `,"reason":"` + strings.Repeat("x", 1001) + `"}`, 400, "reason"},
		{"a huge body", "/v1/autonomy:grant", `{` + resnet + `,"reason":"` + strings.Repeat("x", 2<<20) + `"}`, 413, ""},
		{"revoking what is not granted", "/v1/autonomy:revoke", `{` + resnet + `,"reason":"x"}`, 409, ""},
		{"a revocation without a reason", "/v1/autonomy:revoke", `{` + resnet + `}`, 400, "reason"},
		{"a kind that does not pass", "/v1/autonomy:grant", `{"category":"oom_memory","template":"ml/other","jobKind":"training"}`, 409, ""},
		{"another job kind does not pass", "/v1/autonomy:grant", `{"category":"oom_memory","template":"ml/resnet50-train","jobKind":"batch"}`,
			409, ""},
		{"forced without a reason", "/v1/autonomy:grant", `{"category":"oom_memory","template":"ml/other","jobKind":"training","force":true}`,
			400, "reason"},
		{"a bogus workload", "/v1/autonomy:grant", `{` + resnet + `,"workload":"jobs/../x"}`, 400, "workload"},
		{"the JobSets' kind has no record of its own", "/v1/autonomy:grant", `{` + resnet + `,"workload":"JobSet"}`, 409, ""},
	} {
		status, b, _ := e.call("POST", tc.path, auth.Admin, tc.body)
		if err := apiError(t, b); status != tc.status || err.Field != tc.field {
			t.Errorf("%s: %d field %q (%s); want %d field %q", tc.name, status, err.Field, err.Message, tc.status, tc.field)
		}
	}
	status, b, _ = e.call("POST", "/v1/autonomy:grant", auth.Admin, `{`+resnet+`,"workload":"Job"}`)
	var g AutonomyChangeView
	if status != http.StatusOK || json.Unmarshal(b, &g) != nil || g.Action != ledger.AutonomyGrant || g.By != "ada" || g.Forced ||
		g.Evidence == nil || g.Evidence.Stats.Approved != 10 || g.Workload != "Job" {
		t.Fatalf("an admin's grant: %d %s; want it recorded by ada with its figures", status, b)
	}
	status, b, _ = e.call("POST", "/v1/autonomy:grant", auth.Admin, `{`+resnet+`}`)
	wantError(t, status, b, http.StatusConflict, "")
	status, b, _ = e.call("POST", "/v1/autonomy:grant", auth.Admin,
		`{"category":"oom_memory","template":"ml/other","jobKind":"batch","workload":"RayJob","force":true,"reason":"trusted"}`)
	if status != http.StatusOK || !strings.Contains(string(b), `"forced":true`) || !strings.Contains(string(b), `"jobKind":"batch"`) ||
		!strings.Contains(string(b), `"workload":"RayJob"`) {
		t.Errorf("a forced grant: %d %s; want it recorded forced", status, b)
	}
	status, b, _ = e.call("POST", "/v1/autonomy:revoke", auth.Admin, `{`+resnet+`,"reason":"a bad week"}`)
	if status != http.StatusOK || !strings.Contains(string(b), `"action":"revoke"`) {
		t.Errorf("an admin's revocation: %d %s", status, b)
	}
	if _, b, _ := e.call("GET", "/v1/autonomy", auth.Viewer, ""); !strings.Contains(string(b), `"reason":"a bad week"`) {
		t.Errorf("GET /v1/autonomy after the changes: %s; want them listed", b)
	}

	none := newEnv(t)
	status, b, _ = none.call("GET", "/v1/autonomy", auth.Viewer, "")
	wantError(t, status, b, http.StatusServiceUnavailable, "")
}

// TestReviewPageProposesAutonomy: the queue shows the kinds proposed to become
// automatic; an admin confirms one (the form needs the session's CSRF token), it
// then shows as granted, and an admin sends it back to review; others see no form.
func TestReviewPageProposesAutonomy(t *testing.T) {
	e := newEnv(t, withAutonomy)
	e.reviewedFixes(10)
	admin, approver := e.login(auth.Admin), e.login(auth.Approver)
	status, body := e.page(admin, "/ui/")
	if status != http.StatusOK || !strings.Contains(body, "Proposed to become automatic") ||
		!strings.Contains(body, `data-kind="oom_memory ml/resnet50-train training Job"`) || !strings.Contains(body, `action="/ui/autonomy/grant"`) ||
		!strings.Contains(body, "10 of 10 (100%)") {
		t.Fatalf("the admin's queue: %d\n%s\nwant oom_memory on ml/resnet50-train proposed with a form", status, body)
	}
	_, approverPage := e.page(approver, "/ui/")
	if !strings.Contains(approverPage, `data-kind="oom_memory ml/resnet50-train training Job"`) || strings.Contains(approverPage, `action="/ui/autonomy/`) {
		t.Errorf("the approver's queue: want the proposal without a form\n%s", approverPage)
	}
	post := e.postForm
	kind := url.Values{"category": {"oom_memory"}, "template": {"ml/resnet50-train"}, "jobKind": {"training"}}
	csrf := hiddenCSRF(t, body)
	if status, _ := post(admin, "/ui/autonomy/grant", "", kind); status != http.StatusForbidden {
		t.Errorf("a grant without the CSRF token: %d, want 403", status)
	}
	if status, _ := post(approver, "/ui/autonomy/grant", hiddenCSRF(t, approverPage), kind); status != http.StatusForbidden {
		t.Errorf("an approver's grant: %d, want 403", status)
	}
	status, where := post(admin, "/ui/autonomy/grant", csrf, kind)
	if status != http.StatusSeeOther || where != "/ui/?done=granted#autonomy" {
		t.Fatalf("the admin's confirmation: %d to %q, want 303 to the queue", status, where)
	}
	_, body = e.page(admin, "/ui/?done=granted")
	if !strings.Contains(body, `id="done"`) || !strings.Contains(body, `class="granted" data-kind="oom_memory ml/resnet50-train training Job"`) ||
		!strings.Contains(body, "No kind of fix passes the thresholds yet") || !strings.Contains(body, `action="/ui/autonomy/revoke"`) {
		t.Errorf("the queue after the grant:\n%s\nwant the kind granted with a revoke form, no proposal", body)
	}
	if status, _ := post(admin, "/ui/autonomy/revoke", csrf, kind); status != http.StatusBadRequest {
		t.Errorf("a revocation without a reason: %d, want 400", status)
	}
	kind.Set("reason", "the new image leaks")
	if status, where := post(admin, "/ui/autonomy/revoke", csrf, kind); status != http.StatusSeeOther || where != "/ui/?done=revoked#autonomy" {
		t.Errorf("the admin's revocation: %d to %q", status, where)
	}
	if _, body = e.page(admin, "/ui/"); !strings.Contains(body, `class="proposal" data-kind="oom_memory ml/resnet50-train training Job"`) {
		t.Errorf("the queue after the revocation: want the kind proposed again\n%s", body)
	}
}

// postForm posts form to the review page's path with the session cookie and the
// CSRF token csrf, and returns the status and where it redirects.
func (e *env) postForm(cookie, path, csrf string, form url.Values) (int, string) {
	e.t.Helper()
	form.Set("csrf", csrf)
	req, _ := http.NewRequest("POST", e.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	resp, err := e.noRedirects().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

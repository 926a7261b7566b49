package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// TestCorrectAClassification: an approver (or an admin) corrects a remediation's
// category; the correction comes back as stored, the remediation shows the latest,
// every one is in the audit trail, and nothing else of the remediation changes.
func TestCorrectAClassification(t *testing.T) {
	now := time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return now } })
	r := e.pending(oomEvent)
	path := "/v1/remediations/" + r.EventID + ":correct"

	status, b, _ := e.call("POST", path, auth.Approver, `{"category":"user_code","retryable":false,"note":"the loader leaks"}`)
	if status != http.StatusOK {
		t.Fatalf("correct: %d %s", status, b)
	}
	var got CorrectionView
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := CorrectionView{Category: failure.UserCode, Retryable: false, By: "val", At: now, Note: "the loader leaks"}
	if got != want {
		t.Errorf("POST %s = %+v, want %+v", path, got, want)
	}

	now = now.Add(time.Minute)
	status, b, _ = e.call("POST", path, auth.Admin, `{"category":"data_error","retryable":false}`)
	if status != http.StatusOK {
		t.Fatalf("correct again: %d %s", status, b)
	}
	status, b, _ = e.call("GET", "/v1/remediations/"+r.EventID, auth.Viewer, "")
	var v RemediationView
	if status != http.StatusOK || json.Unmarshal(b, &v) != nil {
		t.Fatalf("get: %d %s", status, b)
	}
	want = CorrectionView{Category: failure.DataError, By: "ada", At: now}
	if v.Correction == nil || *v.Correction != want {
		t.Errorf("GET's correction = %+v, want the latest, %+v", v.Correction, want)
	}
	if v.State != ledger.PendingReview || v.Category != failure.OOMMemory {
		t.Errorf("after corrections: %s, %s; want the state and classification unchanged (pending_review, oom_memory)", v.State, v.Category)
	}
	var corrections []string
	for _, a := range v.Audit {
		if a.Action == "correct" {
			corrections = append(corrections, a.Actor+": "+a.Detail)
		}
	}
	if len(corrections) != 2 || !strings.HasPrefix(corrections[0], "val: category user_code") ||
		!strings.HasPrefix(corrections[1], "ada: category data_error") {
		t.Errorf("correct rows of the audit trail: %q; want val's then ada's", corrections)
	}

	// A remediation without a correction has none in its view.
	r2 := e.pending(strings.Replace(oomEvent, "ev-oom-1", "ev-oom-2", 1))
	_, b, _ = e.call("GET", "/v1/remediations/"+r2.EventID, auth.Viewer, "")
	if strings.Contains(string(b), `"correction"`) {
		t.Errorf("an uncorrected remediation's view has a correction: %s", b)
	}
}

// TestCorrectRefuses: roles come first, then the body; a bad field is a 400 naming
// it, an unknown remediation a 404, a rejected message a 409; nothing is recorded.
func TestCorrectRefuses(t *testing.T) {
	e := newEnv(t)
	r := e.pending(oomEvent)
	rejected := "kafka:autofix.failures/0/42"
	if _, err := e.store.Record(t.Context(), []ledger.Entry{{EventID: rejected, State: ledger.Rejected, Error: "job.name: required",
		Actor: "intake"}}); err != nil {
		t.Fatal(err)
	}
	ok := `{"category":"user_code","retryable":false}`
	for _, c := range []struct {
		name, id string
		role     auth.Role
		body     string
		status   int
		field    string
	}{
		{"a viewer", r.EventID, auth.Viewer, ok, http.StatusForbidden, ""},
		{"a viewer, no such remediation", "no-such-id", auth.Viewer, ok, http.StatusForbidden, ""},
		{"no token", r.EventID, "", ok, http.StatusUnauthorized, ""},
		{"no such remediation", "no-such-id", auth.Approver, ok, http.StatusNotFound, ""},
		{"a rejected message", rejected, auth.Approver, ok, http.StatusConflict, ""},
		{"an unknown category", r.EventID, auth.Approver, `{"category":"oom","retryable":true}`, http.StatusBadRequest, "category"},
		{"no category", r.EventID, auth.Approver, `{"retryable":true}`, http.StatusBadRequest, "category"},
		{"no retryable", r.EventID, auth.Approver, `{"category":"user_code"}`, http.StatusBadRequest, "retryable"},
		{"retryable not a boolean", r.EventID, auth.Approver, `{"category":"user_code","retryable":"no"}`, http.StatusBadRequest, "retryable"},
		{"a note too long", r.EventID, auth.Approver, `{"category":"user_code","retryable":false,"note":"` + strings.Repeat("x", 1001) + `"}`,
			http.StatusBadRequest, "note"},
		{"a note with a control character", r.EventID, auth.Approver, `{"category":"user_code","retryable":false,"note":"a\u0007b"}`,
			http.StatusBadRequest, "note"},
		{"an unknown field", r.EventID, auth.Approver, `{"category":"user_code","retryable":false,"label":"x"}`, http.StatusBadRequest, "label"},
		{"too large", r.EventID, auth.Approver, `{"category":"user_code","retryable":false,"note":"` + strings.Repeat("x", 3<<20) + `"}`,
			http.StatusRequestEntityTooLarge, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, b, _ := e.call("POST", "/v1/remediations/"+url.PathEscape(c.id)+":correct", c.role, c.body)
			wantError(t, status, b, c.status, c.field)
		})
	}
	for _, id := range []string{r.EventID, rejected} {
		if got := mustGet(t, e, id); got.Correction != nil {
			t.Errorf("after the refused corrections %s has the correction %+v", id, got.Correction)
		}
	}
	if n := len(mustGet(t, e, r.EventID).Audit); n != len(r.Audit) {
		t.Errorf("after the refused corrections %s has %d audit rows, want %d", r.EventID, n, len(r.Audit))
	}
}

func mustGet(t *testing.T, e *env, id string) ledger.Remediation {
	t.Helper()
	got, err := e.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

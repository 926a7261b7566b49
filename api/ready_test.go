package api

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/autofix/autofix/auth"
)

// TestReadyzShowsDetailsOnlyWithAToken: without a token /readyz says each check's
// state and nothing of its error (which can name hosts and a DSN); a token of any
// role also gets the details; a bad token is refused.
func TestReadyzShowsDetailsOnlyWithAToken(t *testing.T) {
	const secret = "postgres://autofix:hunter2@db.internal:5432"
	ready := true
	e := newEnv(t, func(o *Options) {
		o.Ready = func(context.Context) (bool, map[string]Check) {
			if ready {
				return true, map[string]Check{"kafka": {State: CheckOK, Detail: "ok"}, "ledger": {State: CheckOK}}
			}
			return false, map[string]Check{
				"kafka":    {State: CheckFailing, Detail: "dial tcp 10.20.30.40:9092: connection refused"},
				"ledger":   {State: CheckFailing, Detail: "ping " + secret + ": timeout"},
				"consumer": {State: CheckNotReady, Detail: "not consuming"},
				"cluster":  {State: "something new", Detail: "?"},
			}
		}
	})
	tests := []struct {
		name        string
		ready       bool
		role        auth.Role
		wantStatus  int
		wantChecks  map[string]string
		wantDetails map[string]string
	}{
		{"ready, no token", true, "", http.StatusOK, map[string]string{"kafka": "ok", "ledger": "ok"}, nil},
		{"ready, viewer", true, auth.Viewer, http.StatusOK, map[string]string{"kafka": "ok", "ledger": "ok"},
			map[string]string{"kafka": "ok", "ledger": "ok"}},
		{"failing, no token", false, "", http.StatusServiceUnavailable,
			map[string]string{"kafka": "failing", "ledger": "failing", "consumer": "not ready", "cluster": "failing"}, nil},
		{"failing, viewer", false, auth.Viewer, http.StatusServiceUnavailable,
			map[string]string{"kafka": "failing", "ledger": "failing", "consumer": "not ready", "cluster": "failing"},
			map[string]string{"kafka": "dial tcp 10.20.30.40:9092: connection refused", "ledger": "ping " + secret + ": timeout",
				"consumer": "not consuming", "cluster": "?"}},
		{"failing, admin", false, auth.Admin, http.StatusServiceUnavailable,
			map[string]string{"kafka": "failing", "ledger": "failing", "consumer": "not ready", "cluster": "failing"},
			map[string]string{"kafka": "dial tcp 10.20.30.40:9092: connection refused", "ledger": "ping " + secret + ": timeout",
				"consumer": "not consuming", "cluster": "?"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready = tt.ready
			status, b, _ := e.call("GET", "/readyz", tt.role, "")
			var got Readiness
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("GET /readyz: %d %s: %v", status, b, err)
			}
			if status != tt.wantStatus || got.Ready != tt.ready || !maps.Equal(got.Checks, tt.wantChecks) || !maps.Equal(got.Details, tt.wantDetails) {
				t.Errorf("GET /readyz as %q = %d %s\nwant %d, checks %v, details %v", tt.role, status, b, tt.wantStatus, tt.wantChecks, tt.wantDetails)
			}
			if tt.role == "" && (strings.Contains(string(b), "10.20.30.40") || strings.Contains(string(b), "hunter2")) {
				t.Errorf("GET /readyz without a token shows an error's text: %s", b)
			}
		})
	}

	req, _ := http.NewRequest("GET", e.url+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer afx_guess")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	checkSpec(t, req, nil, resp.StatusCode, resp.Header, b)
	wantError(t, resp.StatusCode, b, http.StatusUnauthorized, "")
}

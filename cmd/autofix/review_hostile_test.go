package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestReviewListCursorLoop: a server whose page cursors go round in a circle (a, b,
// a, ...) is caught, not followed for ever with --limit 0 (all).
func TestReviewListCursorLoop(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n > 20 { // what the command would do for ever, stopped here so the test ends
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		next := map[string]string{"": "a", "a": "b", "b": "a"}[r.URL.Query().Get("after")]
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"items":[{"id":"r-%d","state":"pending_review","confidence":1,"attempt":1,`+
			`"receivedAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}],"next":%q}`, n, next)
	}))
	defer srv.Close()
	code, stdout, stderr := runCmd(t, "", "review", "list", "--limit", "0", "--server", srv.URL, "--token", "afx_x")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "the page cursor of "+srv.URL) || calls.Load() > 3 {
		t.Errorf("cursors a, b, a: exit %d after %d requests, stdout %q, stderr %q; want exit 1 at the third page, "+
			"saying the cursor does not advance", code, calls.Load(), stdout, stderr)
	}
}

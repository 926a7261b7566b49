package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autofix/autofix/api/client"
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

// TestReviewIDsNameOneRemediation: the id list and show print is the one approve
// acts on. Event ids may hold format characters (a zero-width space, an override),
// which are shown escaped; an id spelling that escape out literally must not look
// the same, and the id shown, pasted into a shell, must be the id itself — not the
// other remediation's.
func TestReviewIDsNameOneRemediation(t *testing.T) {
	ids := []string{
		"ev-1\u200b", `ev-1\u200b`, // a zero-width space, and its escape spelled out
		"ev-2\u202eexe.txt", `ev-2\u202eexe.txt`,
		`$'ev-1\u200b'`, "it's", "a b", "x\u2028y", "plain-3",
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	items := make([]client.RemediationSummary, len(ids))
	for i, id := range ids {
		items[i] = client.RemediationSummary{Id: id, State: client.StatePendingReview, ReceivedAt: now}
	}
	var list bytes.Buffer
	if err := writeList(&list, items, false, now); err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(list.String()), "\n")[1:]
	bash, bashErr := exec.LookPath("bash")
	shown := map[string]string{}
	for i, id := range ids {
		var show bytes.Buffer
		if err := writeShow(&show, &client.RemediationView{Id: id, State: client.StatePendingReview}, now); err != nil {
			t.Fatal(err)
		}
		_, after, _ := strings.Cut(show.String(), "autofix review approve ")
		word, _, _ := strings.Cut(after, " [--option N]")
		if other, ok := shown[word]; ok {
			t.Errorf("ids %q and %q are both shown as %s", other, id, word)
		}
		shown[word] = id
		if !strings.Contains(show.String(), "Remediation:     "+word+"\n") || !strings.HasPrefix(rows[i], word+" ") {
			t.Errorf("id %q: show's hint says %s, but its Remediation line or list row differs:\n%s\n%s", id, word, show.String(), rows[i])
		}
		if bashErr != nil {
			continue
		}
		out, err := exec.Command(bash, "-c", "printf %s "+word).Output() // #nosec G204 -- the word under test
		if err != nil || string(out) != id {
			t.Errorf("id %q is shown as %s, which the shell reads as %q (%v)", id, word, out, err)
		}
	}
}

// TestReviewDotIDsGoNowhereElse: an id of "." or ".." (the service takes such an
// event id) is a path segment a URL resolves away: approve .. would POST to
// /v1/approve. No request goes to a path other than the remediation's own.
func TestReviewDotIDsGoNowhereElse(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.Method+" "+r.URL.EscapedPath())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no such endpoint"}}`))
	}))
	defer srv.Close()
	for _, args := range [][]string{{"show", "."}, {"show", ".."}, {"approve", "."}, {"approve", ".."}, {"reject", "..", "--reason", "r"}} {
		paths = nil
		code, stdout, stderr := runCmd(t, "", append([]string{"review", "--server", srv.URL + "/base", "--token", "afx_x"}, args...)...)
		if len(paths) != 0 || code != 1 || stdout != "" || !strings.Contains(stderr, fmt.Sprintf("ID %q", args[1])) {
			t.Errorf("%q: requests %q, exit %d, stdout %q, stderr %q; want no request and exit 1 naming the ID", args, paths, code, stdout, stderr)
		}
	}
}

// TestReviewNotFoundIsTheRemediation: exit status 3 says the remediation does not
// exist. A 404 that says something else — the API has no such endpoint (a --server
// with /v1 on it), or what answered is not the API (a proxy's page) — is exit 1,
// pointing at --server, whatever the command.
func TestReviewNotFoundIsTheRemediation(t *testing.T) {
	endpoint := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no such endpoint"}}`))
	}
	page := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("<html>404</html>"))
	}
	gone := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"remediation ev-9 not found"}}`))
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		args    []string
		code    int
		want    string
	}{
		{"list, no such endpoint", endpoint, []string{"list"}, 1, "--server"},
		{"approve, no such endpoint", endpoint, []string{"approve", "ev-9"}, 1, "--server"},
		{"reject, a proxy's page", page, []string{"reject", "ev-9", "--reason", "r"}, 1, "--server"},
		{"show, the API's not found", gone, []string{"show", "ev-9"}, exitNotFound, "show ev-9: not found: remediation ev-9 not found"},
	}
	for _, tt := range tests {
		srv := httptest.NewServer(tt.handler)
		code, _, stderr := runCmd(t, "", append([]string{"review", "--server", srv.URL, "--token", "afx_x"}, tt.args...)...)
		srv.Close()
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d saying %q", tt.name, code, stderr, tt.code, tt.want)
		}
	}
}

// TestReviewTokenInTheWrongPlace: a token given where a file or a URL goes (the
// easy slip of --token-file for --token) is not echoed back in the error: the
// error may land in a CI log that the command line does not.
func TestReviewTokenInTheWrongPlace(t *testing.T) {
	t.Setenv("AUTOFIX_TOKEN", "")
	t.Setenv("AUTOFIX_SERVER", "")
	secret := "afx_Zm9vYmFyYmF6cXV4MDEyMzQ1Njc4OWFiY2RlZmdoaWo"
	for _, args := range [][]string{
		{"list", "--token-file", secret},
		{"list", "--server", secret, "--token", "afx_x"},
		{"list", "--ca-file", secret, "--token", "afx_x"},
	} {
		code, stdout, stderr := runCmd(t, "", append([]string{"review"}, args...)...)
		if code != 1 || strings.Contains(stdout+stderr, secret[len(secret)/2:]) || !strings.Contains(stderr, args[1]) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1 naming %s, without the token", args, code, stdout, stderr, args[1])
		}
	}
}

package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/autofix/autofix/api/client"
	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
)

// testReviewNoTokenLeak runs every command, with --verbose, through success and each
// kind of failure, and looks for any token it was given in all it printed.
func testReviewNoTokenLeak(t *testing.T, e *reviewEnv) {
	id := e.pending(t, reviewEvent("leak-1", "team-leak", "resnet50-train-8"), nil)
	wrong := "afx_leakcheck-wrong-token-0123456789abcdefghijklmno"
	dir := t.TempDir()
	twoTokens := writeSecret(t, dir, "two", e.tokens[auth.Approver]+"\n"+wrong+"\n")
	approverFlag := []string{"--token", e.tokens[auth.Approver]}
	runs := []struct {
		role auth.Role
		args []string
	}{
		{auth.Viewer, []string{"list", "-v"}},
		{auth.Viewer, []string{"list", "-v", "--json"}},
		{auth.Viewer, []string{"show", id, "-v"}},
		{auth.Viewer, []string{"approve", id, "-v"}},                                                                  // 403
		{"", append([]string{"approve", id, "-v", "--reason", "ok"}, approverFlag...)},                                // 200
		{"", append([]string{"approve", id, "-v"}, approverFlag...)},                                                  // 409
		{"", append([]string{"show", "no-such", "-v"}, approverFlag...)},                                              // 404
		{"", []string{"list", "-v", "--token", wrong}},                                                                // 401
		{"", []string{"list", "-v", "--token-file", twoTokens}},                                                       // not one token
		{"", append([]string{"list", "-v", "--server", "https://" + freeAddr(t)}, approverFlag...)},                   // no server
		{"", append([]string{"list", "-v", "--server", strings.Replace(e.url, "https", "http", 1)}, approverFlag...)}, // HTTP to HTTPS
	}
	var all strings.Builder
	for _, r := range runs {
		code, stdout, stderr := e.cli(t, r.role, r.args...)
		all.WriteString(stdout + stderr)
		if slices.Contains(r.args, "-v") && code == 0 && !strings.Contains(stderr, "Authorization: Bearer <hidden>") {
			t.Errorf("%q: --verbose does not show the request: %q", r.args, stderr)
		}
	}
	out := all.String()
	for what, secret := range map[string]string{"admin": e.tokens[auth.Admin], "approver": e.tokens[auth.Approver],
		"viewer": e.tokens[auth.Viewer], "wrong": wrong} {
		if strings.Contains(out, secret) {
			t.Errorf("the %s token is in what the commands printed", what)
		}
		// Nor half of one: a token cut in a message is a leak too.
		if half := secret[len(secret)/2:]; strings.Contains(out, half) {
			t.Errorf("half of the %s token is in what the commands printed", what)
		}
	}
	for _, want := range []string{"> GET " + e.url + "/v1/remediations", "> POST " + e.url + "/v1/remediations/" + id + "/approve",
		"< 200 OK", "< 403 Forbidden", "< 409 Conflict", "< 401 Unauthorized"} {
		if !strings.Contains(out, want) {
			t.Errorf("--verbose never printed %q:\n%s", want, out)
		}
	}
}

// Control and format characters a hostile job name or category could carry: ESC
// sequences (clear the screen, set the title, hide text), BEL, a carriage return that
// overwrites the line, a C1 CSI, a right-to-left override, a line break.
const (
	hostileName     = "train-\x1b[2J\x1b]0;owned\x07-\u009b31m-\u202eevil\r\nfake-row"
	hostileCategory = "oom\x1b[8m"
)

// dangerous are the characters that must never reach the terminal as they are.
var dangerous = []string{"\x1b", "\x07", "\r", "\u009b", "\u202e"}

func testReviewSanitizes(t *testing.T, e *reviewEnv) {
	// What the service itself accepts in an event: a carriage return and a
	// bidirectional override, in the job's name and its log.
	accepted := e.pending(t, strings.NewReplacer("resnet50-train-s", "train-\\r\\u202eevil", "loss 1.92", "loss 1.92\\r\\u202e all fine").
		Replace(reviewEvent("sanitize-1", "team-sanitize", "resnet50-train-s")), nil)
	// What only another writer of the ledger could leave there (the service refuses
	// such an event): ESC, BEL, C1, a line break in the name, a category outside the
	// taxonomy.
	forged := e.pending(t, reviewEvent("sanitize-2", "team-sanitize", "resnet50-train-t"), func(ev *failure.Event, rec *failure.Recommendation) {
		ev.Job.Name = hostileName
		rec.Classification.Category = failure.Category(hostileCategory)
	})
	outputs := map[string]string{}
	for name, args := range map[string][]string{
		"list":                {"list", "-n", "team-sanitize"},
		"list -o wide":        {"list", "-n", "team-sanitize", "-o", "wide"},
		"list --json":         {"list", "-n", "team-sanitize", "--json"},
		"show accepted":       {"show", accepted},
		"show accepted -json": {"show", accepted, "--json"},
		"show forged":         {"show", forged},
		"show forged --json":  {"show", forged, "--json"},
	} {
		code, stdout, stderr := e.cli(t, auth.Viewer, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
		outputs[name] = stdout
		for _, d := range dangerous {
			if strings.Contains(stdout+stderr, d) {
				t.Errorf("%s prints %q as it is:\n%q", name, d, stdout)
			}
		}
	}
	// The table: one row each however many line breaks a name holds, the characters
	// shown escaped.
	lines := strings.Split(strings.TrimSpace(outputs["list"]), "\n")
	if len(lines) != 3 || !strings.Contains(rowLine(outputs["list"], forged), `train-\x1b[2J\x1b]0;owned\x07-\u009b31m-\u202eevil\r\nfake-row`) ||
		!strings.Contains(rowLine(outputs["list"], forged), `oom\x1b[8m`) || !strings.Contains(rowLine(outputs["list"], accepted), `train-\r\u202eevil`) {
		t.Errorf("list: %q; want a row each, the job names and the category escaped", lines)
	}
	if !strings.Contains(outputs["show accepted"], `loss 1.92\r\u202e all fine`) {
		t.Errorf("show does not show the log line escaped:\n%s", outputs["show accepted"])
	}
	if !strings.Contains(outputs["show forged"], `oom\x1b[8m (confidence`) {
		t.Errorf("show does not show the category escaped:\n%s", outputs["show forged"])
	}
	// JSON keeps the values: escaped for the terminal, decoded the same.
	var page client.RemediationPage
	if err := json.Unmarshal([]byte(outputs["list --json"]), &page); err != nil || len(page.Items) != 2 ||
		deref(page.Items[0].Job) != hostileName || string(deref(page.Items[0].Category)) != hostileCategory {
		t.Errorf("list --json decodes to %+v (%v); want %s first, with the job %q and the category %q", page.Items, err, forged, hostileName, hostileCategory)
	}
	var v client.RemediationView
	if err := json.Unmarshal([]byte(outputs["show accepted -json"]), &v); err != nil || v.Event == nil ||
		!strings.Contains(deref(v.Event.Failure.LogTail), "loss 1.92\r\u202e all fine") {
		t.Errorf("show --json: %v; want the log tail with its carriage return and override", err)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/autofix/autofix/api/client"
	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

func testReviewList(t *testing.T, e *reviewEnv) {
	elsewhere := e.pending(t, reviewEvent("list-0", "team-list-other", "resnet50-train-0"), nil)
	older := e.pending(t, reviewEvent("list-1", "team-list", "resnet50-train-1"), nil)
	newer := e.pending(t, reviewEvent("list-2", "team-list", "resnet50-train-2"), nil)
	gone := e.pending(t, reviewEvent("list-3", "team-list", "resnet50-train-3"), nil)
	if code, _, stderr := e.cli(t, auth.Approver, "reject", gone, "--reason", "not this one"); code != 0 {
		t.Fatalf("reject %s: exit %d: %s", gone, code, stderr)
	}

	// The table: a header and the two pending fixes, newest first, with their job,
	// category, confidence, what the chosen option changes and their age.
	code, stdout, stderr := e.cli(t, auth.Viewer, "list", "-n", "team-list")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if got, want := strings.Fields(lines[0]), []string{"ID", "NAMESPACE", "JOB", "CATEGORY", "CONFIDENCE", "ACTION", "AGE"}; !slices.Equal(got, want) {
		t.Errorf("list header = %q, want %q", got, want)
	}
	if len(lines) != 3 || !strings.HasPrefix(lines[1], newer+" ") || !strings.HasPrefix(lines[2], older+" ") {
		t.Errorf("list rows:\n%s\nwant %s then %s, and neither the rejected %s nor %s of another namespace", stdout, newer, older, gone, elsewhere)
	}
	if row := rowOf(stdout, older); len(row) < 7 || row[1] != "team-list" || row[2] != "resnet50-train-1" || row[3] != "oom_memory" ||
		!strings.HasPrefix(row[4], "0.") || !strings.Contains(strings.Join(row[5:], " "), "memory 16Gi") {
		t.Errorf("the row of %s is %q; want team-list, resnet50-train-1, oom_memory, its confidence, a memory change, its age", older, row)
	}

	// -o wide adds the state, the attempt, the chosen option's chance and cost.
	code, stdout, stderr = e.cli(t, auth.Viewer, "list", "-n", "team-list", "-o", "wide")
	if code != 0 || !strings.Contains(stdout, "P(SUCCESS)") || !strings.Contains(stdout, "EXPECTED COST") ||
		!strings.Contains(rowLine(stdout, older), "pending_review") || !strings.Contains(rowLine(stdout, older), "$") {
		t.Errorf("list -o wide: exit %d, stdout\n%s\nstderr %s; want the state, P(SUCCESS) and the expected cost", code, stdout, stderr)
	}

	// --json: the API's objects, which decode strictly into the generated type.
	for _, flag := range [][]string{{"--json"}, {"-o", "json"}} {
		code, stdout, stderr = e.cli(t, auth.Viewer, append([]string{"list", "-n", "team-list"}, flag...)...)
		var page client.RemediationPage
		d := json.NewDecoder(strings.NewReader(stdout))
		d.DisallowUnknownFields()
		if err := d.Decode(&page); code != 0 || err != nil {
			t.Fatalf("list %v: exit %d, %v; stdout %s stderr %s", flag, code, err, stdout, stderr)
		}
		var ids []string
		for _, it := range page.Items {
			ids = append(ids, it.Id)
			if it.State != client.StatePendingReview || it.Chosen == nil {
				t.Errorf("list %v: item %s is %s (chosen %v), want pending_review with a chosen option", flag, it.Id, it.State, it.Chosen != nil)
			}
		}
		if want := []string{newer, older}; !slices.Equal(ids, want) {
			t.Errorf("list %v: items %q, want %q", flag, ids, want)
		}
	}

	// Other states, a bound, a filter that matches nothing, a state that is none.
	tests := []struct {
		args       []string
		code       int
		ids        []string
		wantStderr string
	}{
		{[]string{"--state", "all"}, 0, []string{gone, newer, older}, ""},
		{[]string{"--state", "rejected"}, 0, []string{gone}, ""},
		{[]string{"--state", "rejected,pending_review"}, 0, []string{gone, newer, older}, ""},
		{[]string{"--limit", "1"}, 0, []string{newer}, "more remediations match than --limit 1"},
		{[]string{"--limit", "2"}, 0, []string{newer, older}, ""}, // exactly 2: nothing more to say
		{[]string{"--job", "nothing-here"}, 0, nil, "no remediations found"},
		{[]string{"--state", "pending"}, 1, nil, `--state "pending": not a state`},
		{[]string{"--category", "oom"}, 1, nil, `--category "oom"`},
		{[]string{"-o", "yaml"}, 1, nil, `-o "yaml"`},
	}
	for _, tt := range tests {
		code, stdout, stderr := e.cli(t, auth.Viewer, append([]string{"list", "-n", "team-list"}, tt.args...)...)
		var ids []string
		for _, l := range strings.Split(stdout, "\n")[1:] {
			if f := strings.Fields(l); len(f) > 0 {
				ids = append(ids, f[0])
			}
		}
		if code != tt.code || !slices.Equal(ids, tt.ids) || !strings.Contains(stderr, tt.wantStderr) || tt.wantStderr == "" && stderr != "" {
			t.Errorf("list %v: exit %d, rows %q, stderr %q; want exit %d, rows %q, stderr with %q", tt.args, code, ids, stderr, tt.code, tt.ids, tt.wantStderr)
		}
	}
}

// rowLine is the line of stdout that starts with id.
func rowLine(stdout, id string) string {
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, id+" ") {
			return l
		}
	}
	return ""
}

func testReviewShow(t *testing.T, e *reviewEnv) {
	id := e.pending(t, reviewEvent("show-1", "team-show", "resnet50-train-9"), nil)
	code, stdout, stderr := e.cli(t, auth.Viewer, "show", id)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"Remediation:     " + id, "State:           pending_review", "Job:             team-show/resnet50-train-9 (attempt 1, training, template resnet50-train)",
		"OOMKilled, exit code 137, after 30m34s, on node-3", "peakMemory 15.9Gi", "CUDA out of memory", // the failure
		"Category:      oom_memory (confidence",           // the classification
		"Evidence:", `reason: "OOMKilled", exit code 137`, // its evidence
		"Recommendation:", "Options (the chosen one and the Pareto front", "memory 16Gi -> ", // the options, the chosen one marked
		"Audit:", "policy", "review: the test keeps it", // the audit trail
		"autofix review approve " + id,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("show %s does not say %q:\n%s", id, want, stdout)
		}
	}
	if !strings.Contains(stdout, "  *  ") {
		t.Errorf("show %s marks no chosen option:\n%s", id, stdout)
	}

	code, stdout, stderr = e.cli(t, auth.Viewer, "show", id, "-o", "json")
	var v client.RemediationView
	d := json.NewDecoder(strings.NewReader(stdout))
	d.DisallowUnknownFields()
	if err := d.Decode(&v); code != 0 || err != nil {
		t.Fatalf("show -o json: exit %d, %v; stdout %s stderr %s", code, err, stdout, stderr)
	}
	if v.Id != id || v.Event == nil || v.Recommendation == nil || len(v.Audit) == 0 || v.State != client.StatePendingReview {
		t.Errorf("show -o json: %+v; want %s pending_review with its event, recommendation and audit", v, id)
	}
}

func testReviewApprove(t *testing.T, e *reviewEnv) {
	id := e.pending(t, reviewEvent("approve-1", "team-approve", "resnet50-train-4"), nil)
	code, stdout, stderr := e.cli(t, auth.Approver, "approve", id, "--reason", "15.9Gi peak: more memory is right")
	if code != 0 || !strings.Contains(stdout, "remediation "+id+" approved") || !strings.Contains(stdout, "team-approve/resnet50-train-4-af2") {
		t.Fatalf("approve: exit %d, stdout %q, stderr %q; want it approved, naming the job it runs", code, stdout, stderr)
	}
	r := e.remediation(t, id)
	last := e.lastAudit(t, id)
	if !decided(r.State) || !slices.ContainsFunc(r.Audit, func(a ledger.AuditEntry) bool {
		return a.Actor == "val" && a.Action == "approve" && strings.Contains(a.Detail, "15.9Gi peak")
	}) {
		t.Errorf("after approve the ledger has %s with last audit line %+v; want approved (or submitted) by val with the reason", r.State, last)
	}

	// Again: it is no longer pending, the API says so, and the exit status is 4.
	code, stdout, stderr = e.cli(t, auth.Approver, "approve", id)
	if code != exitConflict || stdout != "" || !strings.Contains(stderr, "approve "+id+": remediation "+id+" is ") ||
		!strings.Contains(stderr, "only a pending_review one can be approved") {
		t.Errorf("approve twice: exit %d, stdout %q, stderr %q; want exit %d and the API's reason", code, stdout, stderr, exitConflict)
	}

	// --option: the chosen one by number works like the default; one off the front is the API's 400.
	other := e.pending(t, reviewEvent("approve-2", "team-approve", "resnet50-train-5"), nil)
	code, _, stderr = e.cli(t, auth.Approver, "approve", other, "--option", "-3")
	if code != 1 || !strings.Contains(stderr, "--option -3") {
		t.Errorf("approve --option -3: exit %d, stderr %q; want exit 1 naming --option", code, stderr)
	}
	code, _, stderr = e.cli(t, auth.Approver, "approve", other, "--option", "999")
	if code != 1 || !strings.Contains(stderr, "approve "+other+": --option: ") {
		t.Errorf("approve --option 999: exit %d, stderr %q; want exit 1, the API's refusal naming --option", code, stderr)
	}
	if st := e.remediation(t, other).State; st != ledger.PendingReview {
		t.Errorf("after refused approvals %s is %s, want pending_review", other, st)
	}
	rec := e.remediation(t, other).Recommendation
	code, stdout, stderr = e.cli(t, auth.Approver, "approve", other, "--option", jsonInt(rec.Chosen), "-o", "json")
	var v client.RemediationView
	if err := json.Unmarshal([]byte(stdout), &v); code != 0 || err != nil || v.Id != other || v.Retry == nil {
		t.Errorf("approve --option %d -o json: exit %d (%v), stdout %s, stderr %s; want the approved remediation", rec.Chosen, code, err, stdout, stderr)
	}

	// --option N of the front, not the chosen one: what runs is option N.
	var pick int
	third := e.pending(t, reviewEvent("approve-3", "team-approve", "resnet50-train-6"), func(_ *failure.Event, r *failure.Recommendation) {
		pick = len(r.Options) - 1
		r.Options[pick].Pareto = true
	})
	rec = e.remediation(t, third).Recommendation
	if pick == rec.Chosen {
		t.Fatalf("the recommendation of %s has one option: no other to pick", third)
	}
	want := rec.Options[pick]
	code, stdout, stderr = e.cli(t, auth.Approver, "approve", third, "--option", jsonInt(pick))
	r = e.remediation(t, third)
	if n := len(r.Attempts); code != 0 || n == 0 || r.Attempts[n-1].Resources != want.Resources ||
		!strings.Contains(stdout, strings.Join(want.Changes, ", ")) {
		t.Errorf("approve --option %d: exit %d, stdout %q, stderr %q, attempts %+v; want it to run option %d, %v (%s)",
			pick, code, stdout, stderr, r.Attempts, pick, want.Resources, strings.Join(want.Changes, ", "))
	}
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

func testReviewReject(t *testing.T, e *reviewEnv) {
	id := e.pending(t, reviewEvent("reject-1", "team-reject", "resnet50-train-6"), nil)
	// Refused before anything is sent (-v would show the request).
	for _, args := range [][]string{{"reject", id, "-v"}, {"reject", id, "-v", "--reason", "   "}} {
		code, stdout, stderr := e.cli(t, auth.Approver, args...)
		if code != 1 || stdout != "" || !strings.Contains(stderr, "--reason: required") || strings.Contains(stderr, "> POST") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1: --reason is required, and no request", args, code, stdout, stderr)
		}
	}
	if st := e.remediation(t, id).State; st != ledger.PendingReview {
		t.Fatalf("after a reject without a reason %s is %s, want pending_review", id, st)
	}
	code, stdout, stderr := e.cli(t, auth.Approver, "reject", id, "--reason", "the loader leaks; fix the code")
	if code != 0 || !strings.Contains(stdout, "remediation "+id+" rejected (now rejected)") {
		t.Fatalf("reject: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	r, last := e.remediation(t, id), e.lastAudit(t, id)
	if r.State != ledger.Rejected || last.Actor != "val" || last.Action != "reject" || !strings.Contains(last.Detail, "the loader leaks") {
		t.Errorf("after reject: %s, last audit line %+v; want rejected by val with the reason", r.State, last)
	}
	code, _, stderr = e.cli(t, auth.Approver, "reject", id, "--reason", "again")
	if code != exitConflict || !strings.Contains(stderr, "only a pending_review one can be rejected") {
		t.Errorf("reject twice: exit %d, stderr %q; want exit %d and the API's reason", code, stderr, exitConflict)
	}
}

func testReviewNotFound(t *testing.T, e *reviewEnv) {
	for _, args := range [][]string{{"show", "no-such-id"}, {"approve", "no-such-id"}, {"reject", "no-such-id", "--reason", "r"}} {
		code, stdout, stderr := e.cli(t, auth.Approver, args...)
		if code != exitNotFound || stdout != "" || !strings.Contains(stderr, args[0]+" no-such-id: not found") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d, not found", args, code, stdout, stderr, exitNotFound)
		}
	}
}

func testReviewViewer(t *testing.T, e *reviewEnv) {
	id := e.pending(t, reviewEvent("viewer-1", "team-viewer", "resnet50-train-7"), nil)
	for _, args := range [][]string{{"approve", id}, {"reject", id, "--reason", "no"}} {
		code, stdout, stderr := e.cli(t, auth.Viewer, args...)
		want := "the token's role (viewer) may not " + args[0] + ": it needs approver"
		if code != 1 || stdout != "" || !strings.Contains(stderr, want) || !strings.Contains(stderr, "--token-file") {
			t.Errorf("%q as a viewer: exit %d, stdout %q, stderr %q; want exit 1 and %q, naming the token's source", args, code, stdout, stderr, want)
		}
	}
	if st := e.remediation(t, id).State; st != ledger.PendingReview {
		t.Errorf("after a viewer's approval %s is %s, want pending_review", id, st)
	}
}

func testReviewBadToken(t *testing.T, e *reviewEnv) {
	code, stdout, stderr := e.cli(t, "", "list", "--token", "afx_not-a-token-of-this-server")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "the token was refused (it came from --token)") {
		t.Errorf("a wrong token: exit %d, stdout %q, stderr %q; want exit 1: the token from --token was refused", code, stdout, stderr)
	}
	code, _, stderr = e.cli(t, "", "list")
	if code != 1 || !strings.Contains(stderr, "no token: pass --token-file") {
		t.Errorf("no token: exit %d, stderr %q; want exit 1 saying how to give one", code, stderr)
	}
	dir := t.TempDir()
	for name, data := range map[string]string{"empty": "\n", "two": e.tokens[auth.Viewer] + "\n" + e.tokens[auth.Viewer]} {
		code, _, stderr = e.cli(t, "", "list", "--token-file", writeSecret(t, dir, name, data))
		if code != 1 || !strings.Contains(stderr, "the token from --token-file ") {
			t.Errorf("a token file %s: exit %d, stderr %q; want exit 1 naming the file", name, code, stderr)
		}
	}
	code, _, stderr = e.cli(t, "", "list", "--token-file", dir+"/missing")
	if code != 1 || !strings.Contains(stderr, "--token-file: open ") {
		t.Errorf("a missing token file: exit %d, stderr %q; want exit 1 naming --token-file", code, stderr)
	}
}

// testReviewTokenPrecedence gives tokens in several places at once: --token wins over
// --token-file, which wins over AUTOFIX_TOKEN. Which one was used shows in the
// audit trail (the approver is val) or in the refusal, which names its source.
func testReviewTokenPrecedence(t *testing.T, e *reviewEnv) {
	wrongFile := writeSecret(t, t.TempDir(), "wrong.token", "afx_wrong-token\n")
	approver, viewer := e.tokens[auth.Approver], e.tokens[auth.Viewer]
	tests := []struct {
		name  string
		env   string
		args  []string
		refer string // "" when the approval goes through; else the source the refusal names
	}{
		{"--token over --token-file", "", []string{"--token", approver, "--token-file", wrongFile}, ""},
		{"--token over AUTOFIX_TOKEN", approver, []string{"--token", "afx_wrong-token"}, "it came from --token)"},
		{"--token-file over AUTOFIX_TOKEN", approver, []string{"--token-file", wrongFile}, "it came from --token-file " + wrongFile + ")"},
		{"--token-file over AUTOFIX_TOKEN, the other way", viewer, []string{"--token-file", e.tokenFiles[auth.Approver]}, ""},
		{"AUTOFIX_TOKEN alone", approver, nil, ""},
		{"AUTOFIX_TOKEN, a viewer's", viewer, nil, "(the token came from AUTOFIX_TOKEN)"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AUTOFIX_TOKEN", tt.env)
			id := e.pending(t, reviewEvent("precedence-"+jsonInt(i), "team-precedence", "resnet50-train-"+jsonInt(i)), nil)
			code, _, stderr := e.cli(t, "", append([]string{"approve", id}, tt.args...)...)
			st := e.remediation(t, id).State
			if tt.refer == "" {
				if code != 0 || !decided(st) || e.lastAuditBy(t, id, "approve") != "val" {
					t.Errorf("exit %d, %s, stderr %q; want approved by val", code, st, stderr)
				}
				return
			}
			if code != 1 || st != ledger.PendingReview || !strings.Contains(stderr, tt.refer) {
				t.Errorf("exit %d, %s, stderr %q; want a refusal naming %q", code, st, stderr, tt.refer)
			}
		})
	}
}

// lastAuditBy is the actor of id's latest audit line of action.
func (e *reviewEnv) lastAuditBy(t *testing.T, id, action string) string {
	t.Helper()
	r := e.remediation(t, id)
	for i := len(r.Audit) - 1; i >= 0; i-- {
		if r.Audit[i].Action == action {
			return r.Audit[i].Actor
		}
	}
	return ""
}

func testReviewTLS(t *testing.T, e *reviewEnv) {
	base := []string{"review", "list", "--server", e.url, "--token-file", e.tokenFiles[auth.Viewer]}
	code, _, stderr := runCmd(t, "", base...)
	if code != 1 || !strings.Contains(stderr, "certificate") || !strings.Contains(stderr, "--ca-file") {
		t.Errorf("a server certificate of an unknown CA: exit %d, stderr %q; want exit 1, pointing at --ca-file", code, stderr)
	}
	code, _, stderr = runCmd(t, "", append(base, "--insecure-skip-tls-verify")...)
	if code != 0 || !strings.Contains(stderr, "warning: --insecure-skip-tls-verify") {
		t.Errorf("--insecure-skip-tls-verify: exit %d, stderr %q; want it to work, with a warning", code, stderr)
	}
	code, _, stderr = runCmd(t, "", append(base, "--insecure-skip-tls-verify", "--ca-file", e.ca.CertFile)...)
	if code != 1 || !strings.Contains(stderr, "give one or the other") {
		t.Errorf("--insecure-skip-tls-verify with --ca-file: exit %d, stderr %q; want exit 1", code, stderr)
	}
	code, _, stderr = runCmd(t, "", append(base, "--ca-file", e.tokenFiles[auth.Viewer])...)
	if code != 1 || !strings.Contains(stderr, "--ca-file: ") || !strings.Contains(stderr, "no PEM certificate") {
		t.Errorf("--ca-file of no certificate: exit %d, stderr %q; want exit 1 naming --ca-file", code, stderr)
	}
	if bytes.Contains([]byte(stderr), []byte(e.tokens[auth.Viewer])) {
		t.Errorf("--ca-file naming the token file shows the token: %q", stderr)
	}
}

package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/autofix/autofix/api/client"
	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/examples"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/rules"
	"github.com/autofix/autofix/rulesdiff"
)

// recordSamples records the sample events (twice over, under new ids, a minute
// apart) and a rejected message in e's ledger, as the policy would keep them for
// review, and returns the events, oldest first.
func recordSamples(t *testing.T, e *env) []failure.Event {
	t.Helper()
	var evs []failure.Event
	sc := bufio.NewScanner(bytes.NewReader(examples.Events))
	sc.Buffer(nil, failure.MaxPayload)
	for sc.Scan() {
		if ev, err := failure.Decode(sc.Bytes()); err == nil {
			evs = append(evs, ev)
		}
	}
	evs = append(evs, evs...)
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	entries := []ledger.Entry{{EventID: "kafka:failures/0/3", Error: "payload: not valid JSON", ReceivedAt: base.Add(time.Hour)}}
	for i := range evs {
		evs[i].ID = fmt.Sprintf("%s-%d", evs[i].ID, i)
		rec := e.rec.Recommend(&evs[i], nil)
		entries = append(entries, ledger.Entry{Event: &evs[i], ChainID: evs[i].Job.Namespace + "/" + evs[i].Job.Name, Recommendation: &rec,
			State: ledger.PendingReview, Actor: "policy", Reason: "kept for review", ReceivedAt: base.Add(time.Duration(i) * time.Minute)})
	}
	if _, err := e.store.Record(t.Context(), entries); err != nil {
		t.Fatal(err)
	}
	return evs
}

// embeddedRules are the embedded rule files, name -> YAML, with memory.yaml changed
// by edit (nil: unchanged).
func embeddedRules(t *testing.T, edit func(string) string) map[string]string {
	t.Helper()
	names, err := fs.Glob(rules.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, name := range names {
		data, err := fs.ReadFile(rules.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(data)
		if name == "memory.yaml" && edit != nil {
			if files[name] = edit(string(data)); files[name] == string(data) {
				t.Fatal("the edit of memory.yaml changes nothing: the embedded rules are not what this test expects")
			}
		}
	}
	return files
}

// oomKilledIsUserCode makes the rule of OOMKilled containers say user code, not
// retryable.
func oomKilledIsUserCode(s string) string {
	return strings.Replace(s, "    category: oom_memory\n    retryable: true\n    action: increase_memory\n    confidence: 0.97",
		"    category: user_code\n    retryable: false\n    action: no_retry\n    confidence: 0.97", 1)
}

func diffBody(t *testing.T, req RulesDiffRequest) string {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// diff posts req to /v1/rules:diff as an admin and returns the report.
func (e *env) diff(t *testing.T, req RulesDiffRequest) rulesdiff.Report {
	t.Helper()
	status, b, _ := e.call("POST", "/v1/rules:diff", auth.Admin, diffBody(t, req))
	if status != http.StatusOK {
		t.Fatalf("rules:diff: %d %s", status, b)
	}
	var rep rulesdiff.Report
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("rules:diff: %v\n%s", err, b)
	}
	return rep
}

// TestRulesDiffShowsWhatTheCandidateChanges replays the recorded samples through a
// candidate whose rule of OOMKilled containers says user code: exactly the OOMKilled
// events change, newest first; with last, only the newest are replayed.
func TestRulesDiffShowsWhatTheCandidateChanges(t *testing.T) {
	e := newEnv(t)
	evs := recordSamples(t, e)
	var oomKilled []string
	for _, ev := range slices.Backward(evs) {
		if ev.Failure.Reason == "OOMKilled" {
			oomKilled = append(oomKilled, ev.ID)
		}
	}
	files := embeddedRules(t, oomKilledIsUserCode)
	rep := e.diff(t, RulesDiffRequest{Files: files})
	want := rulesdiff.Summary{Replayed: len(evs), Skipped: 1, Changed: 2, CategoryChanges: 2, RetryChanges: 2, NoLongerRetried: 2, ActionChanges: 2}
	if rep.Summary != want {
		t.Errorf("summary = %+v, want %+v", rep.Summary, want)
	}
	var changed []string
	for _, c := range rep.Changes {
		changed = append(changed, c.ID)
		if c.Recorded != failure.OOMMemory || c.Current.Category != failure.OOMMemory || c.Candidate.Category != failure.UserCode ||
			c.Candidate.Retryable || c.Job != "ml/resnet50-train-7" {
			t.Errorf("change %+v: want ml/resnet50-train-7 from oom_memory (recorded and current) to user_code, not retried", c)
		}
	}
	if !slices.Equal(changed, oomKilled) {
		t.Errorf("changed = %v, want the OOMKilled events newest first, %v", changed, oomKilled)
	}
	if w := []rulesdiff.Cell{{From: failure.OOMMemory, To: failure.UserCode, Count: 2}}; !slices.Equal(rep.Matrix, w) {
		t.Errorf("matrix = %v, want %v", rep.Matrix, w)
	}

	last := len(evs) / 2
	rep = e.diff(t, RulesDiffRequest{Files: files, Last: &last})
	if rep.Summary.Replayed != last || rep.Summary.Changed != 1 || len(rep.Changes) != 1 || rep.Changes[0].ID != oomKilled[0] {
		t.Errorf("last %d: %+v, changes %+v; want %d replayed and %s changed alone", last, rep.Summary, rep.Changes, last, oomKilled[0])
	}

	// The rules in use as the candidate change nothing.
	rep = e.diff(t, RulesDiffRequest{Files: embeddedRules(t, nil)})
	if rep.Summary.Changed != 0 || len(rep.Changes) != 0 || len(rep.Matrix) != 0 {
		t.Errorf("the rules in use as the candidate: %+v", rep)
	}
}

// TestRulesDiffTriesCandidateKnowledge: candidate tables are layered over the
// embedded ones and replace the ones in use; with a model, tables that disable every
// entry change what the model decides, exactly as the classifier in use would with
// those tables.
func TestRulesDiffTriesCandidateKnowledge(t *testing.T) {
	inUse, err := classifier.LoadDefault(classifier.Sources{}, classifier.Options{MinConfidence: 0.5, Authority: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) { o.Classifier = inUse })
	// An event per knowledge entry, its key in a log tail no rule explains.
	disabled := map[string]*strings.Builder{}
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var entries []ledger.Entry
	for i, k := range inUse.Knowledge().Entries() {
		ev := failure.Event{ID: fmt.Sprintf("k-%03d", i), Job: failure.Job{Namespace: "ml", Name: fmt.Sprintf("job-%03d", i)},
			Failure: failure.Signals{Reason: "Error", ExitCode: 1, LogTail: "step 10\nerror: " + k.Key + " happened"}}
		entries = append(entries, ledger.Entry{Event: &ev, ChainID: "ml/" + ev.Job.Name, State: ledger.PendingReview, Actor: "policy",
			ReceivedAt: base.Add(time.Duration(i) * time.Second)})
		if disabled[k.Table] == nil {
			disabled[k.Table] = &strings.Builder{}
			fmt.Fprintf(disabled[k.Table], "table: %s\nentries:\n", k.Table)
		}
		fmt.Fprintf(disabled[k.Table], "  - key: %q\n    disabled: true\n", k.Key)
	}
	if _, err := e.store.Record(t.Context(), entries); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	layer := fstest.MapFS{}
	for table, b := range disabled {
		files[table+".yaml"] = b.String()
		layer[table+".yaml"] = &fstest.MapFile{Data: []byte(b.String())}
	}
	embedded, err := fs.Sub(rules.Knowledge, "knowledge")
	if err != nil {
		t.Fatal(err)
	}
	k, err := classifier.LoadKnowledge(embedded, layer)
	if err != nil {
		t.Fatal(err)
	}
	without := inUse.WithKnowledge(k)
	var want []string
	for _, en := range slices.Backward(entries) {
		a, b := inUse.Classify(en.Event), without.Classify(en.Event)
		if a.Category != b.Category || a.Retryable != b.Retryable || a.Action != b.Action {
			want = append(want, en.Event.ID)
		}
	}
	if len(want) == 0 {
		t.Fatal("disabling every knowledge entry changes no classification of the test's events: the test shows nothing")
	}
	rep := e.diff(t, RulesDiffRequest{Knowledge: files})
	var got []string
	for _, c := range rep.Changes {
		got = append(got, c.ID)
	}
	if !slices.Equal(got, want) || rep.Summary.Replayed != len(entries) {
		t.Errorf("knowledge candidate: %d replayed, changed %v; want %d replayed, changed %v", rep.Summary.Replayed, got, len(entries), want)
	}
}

func TestRulesDiffRefusesBadRequests(t *testing.T) {
	e := newEnv(t)
	recordSamples(t, e)
	files := embeddedRules(t, nil)
	for _, c := range []struct {
		name  string
		body  string
		field string
	}{
		{"no candidate", `{"last": 10}`, "files"},
		{"empty candidate", `{"files": {}, "knowledge": {}}`, "files"},
		{"last 0", diffBody(t, RulesDiffRequest{Files: files, Last: ptr(0)}), "last"},
		{"last over the cap", diffBody(t, RulesDiffRequest{Files: files, Last: ptr(1001)}), "last"},
		{"last not a number", `{"files": {"a.yaml": ""}, "last": "all"}`, "last"},
		{"an unknown field", `{"files": {"a.yaml": ""}, "event": {}}`, "event"},
		{"a file name with a slash", `{"files": {"../a.yaml": ""}}`, "files.../a.yaml"},
		{"a file that is not YAML by name", `{"knowledge": {"a.json": ""}}`, "knowledge.a.json"},
		{"a rule that does not compile", diffBody(t, RulesDiffRequest{Files: embeddedRules(t, func(s string) string {
			return strings.Replace(s, `reason == "OOMKilled"`, `reason ===`, 1)
		})}), "files.memory.yaml"},
		{"a table that does not load", `{"knowledge": {"mine.yaml": "table: [x]\n"}}`, "knowledge.mine.yaml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, b, _ := e.call("POST", "/v1/rules:diff", auth.Admin, c.body)
			wantError(t, status, b, http.StatusBadRequest, c.field)
		})
	}
	// 4x the usual body limit, as rules:test.
	big := diffBody(t, RulesDiffRequest{Files: map[string]string{"big.yaml": "# " + strings.Repeat("x", 5<<20)}})
	status, b, _ := e.call("POST", "/v1/rules:diff", auth.Admin, big)
	wantError(t, status, b, http.StatusRequestEntityTooLarge, "")
}

// TestRulesDiffIsForAdmins: a viewer or an approver gets 403 whatever the body,
// before it is read.
func TestRulesDiffIsForAdmins(t *testing.T) {
	e := newEnv(t)
	for _, role := range []auth.Role{auth.Viewer, auth.Approver} {
		for _, b := range badBodies {
			t.Run(string(role)+"/"+b.name, func(t *testing.T) {
				req, err := http.NewRequest("POST", e.url+"/v1/rules:diff", strings.NewReader(b.body))
				if err != nil {
					t.Fatal(err)
				}
				if b.contentType != "" {
					req.Header.Set("Content-Type", b.contentType)
				}
				req.Header.Set("Authorization", "Bearer "+e.tokens[role])
				resp, err := e.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("POST /v1/rules:diff as %s with %s: %d, want 403\n%.300s", role, b.name, resp.StatusCode, body)
				}
				checkSpec(t, req, []byte(b.body), resp.StatusCode, resp.Header, body)
			})
		}
	}
	status, b, _ := e.call("POST", "/v1/rules:diff", "", `{"files": {"a.yaml": ""}}`)
	wantError(t, status, b, http.StatusUnauthorized, "")
}

// TestRulesDiffGivesUpAtTheDeadline: on a server whose requests have no time at all,
// the replay stops and says why, whether the candidate is rules or tables.
func TestRulesDiffGivesUpAtTheDeadline(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Timeout = time.Nanosecond })
	for _, req := range []RulesDiffRequest{
		{Files: embeddedRules(t, oomKilledIsUserCode)},
		{Knowledge: map[string]string{"mine.yaml": "table: kubernetes\nentries:\n  - key: OOMKilled\n    disabled: true\n"}},
	} {
		status, b, _ := e.call("POST", "/v1/rules:diff", auth.Admin, diffBody(t, req))
		got := wantError(t, status, b, http.StatusServiceUnavailable, "")
		if !strings.Contains(got.Message, "the replay did not finish within the request's time limit") ||
			!strings.Contains(got.Message, "deadline exceeded") {
			t.Errorf("message %q does not say the replay ran out of time", got.Message)
		}
	}
}

// TestRulesDiffThroughTheGeneratedClient: the report decodes strictly into the
// generated type, and a viewer's call is a typed 403.
func TestRulesDiffThroughTheGeneratedClient(t *testing.T) {
	e := newEnv(t)
	recordSamples(t, e)
	base := liveServer(t, e)
	admin, viewer := e.apiClient(t, base, auth.Admin), e.apiClient(t, base, auth.Viewer)
	files := embeddedRules(t, oomKilledIsUserCode)
	r, err := admin.DiffRulesWithResponse(t.Context(), client.RulesDiffRequest{Files: &files, Last: ptr(10)})
	rep := ok(t, "diff rules", r.StatusCode(), r.JSON200, r.Body, err)
	if rep.Summary.Replayed != 10 || rep.Summary.Changed != 1 || len(rep.Changes) != 1 ||
		rep.Changes[0].Candidate.Category != client.CategoryUserCode || rep.Changes[0].Recorded == nil {
		t.Errorf("report %+v; want 10 replayed, one OOMKilled event to user_code", rep)
	}
	x, err := viewer.DiffRulesWithResponse(t.Context(), client.RulesDiffRequest{Files: &files})
	if err != nil {
		t.Fatal(err)
	}
	if x.StatusCode() != http.StatusForbidden || x.JSON403 == nil || x.JSON403.Error.Code != client.ErrorCodeForbidden {
		t.Errorf("a viewer's diff: %d %s; want a typed 403", x.StatusCode(), clipBody(x.Body))
	}
}

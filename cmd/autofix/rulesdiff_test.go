package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/examples"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/rules"
	"github.com/autofix/autofix/rulesdiff"
)

// diffLedger records the sample events (twice over, under new ids) and a rejected
// message in a SQLite ledger in a new data directory, and returns the directory and
// the ids of the OOMKilled events, newest first.
func diffLedger(t *testing.T) (dataDir string, oomKilled []string) {
	t.Helper()
	dataDir = t.TempDir()
	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(dataDir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	var samples []failure.Event
	sc := bufio.NewScanner(bytes.NewReader(examples.Events))
	sc.Buffer(nil, failure.MaxPayload)
	for sc.Scan() {
		if ev, err := failure.Decode(sc.Bytes()); err == nil {
			samples = append(samples, ev)
		}
	}
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	entries := []ledger.Entry{{EventID: "kafka:failures/0/7", Error: "payload: not valid JSON", ReceivedAt: base.Add(time.Hour)}}
	for i := range 2 * len(samples) {
		ev := samples[i%len(samples)]
		ev.ID = fmt.Sprintf("%s-%d", ev.ID, i)
		if ev.Failure.Reason == "OOMKilled" {
			oomKilled = append([]string{ev.ID}, oomKilled...)
		}
		entries = append(entries, ledger.Entry{Event: &ev, ChainID: ev.Job.Namespace + "/" + ev.Job.Name, State: ledger.PendingReview,
			Actor: "policy", Reason: "kept for review", ReceivedAt: base.Add(time.Duration(i) * time.Minute)})
	}
	if _, err := store.Record(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if len(oomKilled) != 2 {
		t.Fatalf("%d OOMKilled sample events recorded, want 2", len(oomKilled))
	}
	return dataDir, oomKilled
}

// emptyLedger creates an empty SQLite ledger and returns its file.
func emptyLedger(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "empty.db")
	store, err := ledger.Open(t.Context(), file)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	return file
}

// diffCandidate writes the embedded rules to a directory, with the rule of
// OOMKilled containers changed by edit (nil: unchanged).
func diffCandidate(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	names, err := fs.Glob(rules.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		data, err := fs.ReadFile(rules.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "memory.yaml" && edit != nil {
			changed := edit(string(data))
			if changed == string(data) {
				t.Fatal("the edit of memory.yaml changes nothing: the embedded rules are not what this test expects")
			}
			data = []byte(changed)
		}
		writeFile(t, dir, name, string(data))
	}
	return dir
}

// oomKilledSaysUserCode makes the rule of OOMKilled containers say user code, not
// retryable.
func oomKilledSaysUserCode(s string) string {
	return strings.Replace(s, "    category: oom_memory\n    retryable: true\n    action: increase_memory\n    confidence: 0.97",
		"    category: user_code\n    retryable: false\n    action: no_retry\n    confidence: 0.97", 1)
}

// userCodeIsTransient adds a rule that says the user-code sample's failure
// (NameError: name 'build_model' ...) is transient, retried: newly retried.
func userCodeIsTransient(s string) string {
	return strings.Replace(s, "rules:\n", `rules:
  - id: build-model-is-transient
    description: a test's rule that retries what is not retried now
    expr: has("name 'build_model' is not defined")
    category: network_transient
    retryable: true
    action: retry_backoff
    confidence: 0.99
    priority: 500
`, 1)
}

func TestRulesDiffTable(t *testing.T) {
	data, oomKilled := diffLedger(t)
	code, out, errOut := runCmd(t, "", "rules", "diff", "--data-dir", data, "--rules", diffCandidate(t, oomKilledSaysUserCode))
	if code != 0 {
		t.Fatalf("rules diff = exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "EVENT") || !strings.Contains(lines[0], "CATEGORY") || !strings.Contains(lines[0], "RETRY") {
		t.Errorf("first line = %q, want the table's header", lines[0])
	}
	for i, id := range oomKilled {
		fields := strings.Fields(lines[1+i])
		want := []string{id, "ml/resnet50-train-7", "oom_memory", "->", "user_code", "yes", "->", "no", "increase_memory", "->", "no_retry"}
		if len(fields) < len(want) || !slices.Equal(fields[:len(want)], want) {
			t.Errorf("line %d = %q, want it to start %q", 1+i, lines[1+i], strings.Join(want, " "))
		}
	}
	for _, want := range []string{
		"Replayed 20 failure events: 2 changed.",
		"  skipped, without an event:  1\n",
		"  retry-decision changes:     2 (0 newly retried, 2 no longer retried)\n",
		"CURRENT \\ CANDIDATE  user_code",
		"oom_memory           2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestRulesDiffJSON(t *testing.T) {
	data, oomKilled := diffLedger(t)
	code, out, errOut := runCmd(t, "", "rules", "diff", "--data-dir", data, "--rules", diffCandidate(t, oomKilledSaysUserCode), "--json", "--last", "15")
	if code != 0 {
		t.Fatalf("rules diff --json = exit %d, stderr %q", code, errOut)
	}
	var rep rulesdiff.Report
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("output is not one report: %v\n%s", err, out)
	}
	// The newest 15 of 20 events hold the newer OOMKilled one only.
	want := rulesdiff.Summary{Replayed: 15, Skipped: 1, Changed: 1, CategoryChanges: 1, RetryChanges: 1, NoLongerRetried: 1, ActionChanges: 1}
	if rep.Summary != want {
		t.Errorf("summary = %+v, want %+v", rep.Summary, want)
	}
	if len(rep.Changes) != 1 || rep.Changes[0].ID != oomKilled[0] || rep.Changes[0].Candidate.Category != failure.UserCode {
		t.Errorf("changes = %+v, want %s to user_code alone", rep.Changes, oomKilled[0])
	}
	if len(rep.Matrix) != 1 || rep.Matrix[0] != (rulesdiff.Cell{From: failure.OOMMemory, To: failure.UserCode, Count: 1}) {
		t.Errorf("matrix = %v", rep.Matrix)
	}
}

func TestRulesDiffExitStatus(t *testing.T) {
	data, _ := diffLedger(t)
	changed, same, retried := diffCandidate(t, oomKilledSaysUserCode), diffCandidate(t, nil), diffCandidate(t, userCodeIsTransient)
	broken := diffCandidate(t, func(s string) string { return strings.Replace(s, `reason == "OOMKilled"`, `reason ===`, 1) })
	diff := func(args ...string) []string { return append([]string{"rules", "diff", "--data-dir", data}, args...) }
	for _, c := range []struct {
		name       string
		args       []string
		code       int
		wantStderr string
	}{
		{"changes, no limit", diff("--rules", changed), 0, ""},
		{"no change, fail on change", diff("--rules", same, "--fail-on-change"), 0, ""},
		{"changes, fail on change", diff("--rules", changed, "--fail-on-change"), 1, "rules diff: changed events: 2 (--fail-on-change)"},
		{"retry changes at the limit", diff("--rules", changed, "--max-retry-changes", "2"), 0, ""},
		{"retry changes over the limit", diff("--rules", changed, "--max-retry-changes", "1"), 1, "rules diff: retry-decision changes: 2, over --max-retry-changes 1"},
		{"category changes over the limit", diff("--rules", changed, "--max-category-changes", "0"), 1, "rules diff: category changes: 2, over --max-category-changes 0"},
		{"none newly retried", diff("--rules", changed, "--max-newly-retried", "0"), 0, ""},
		{"newly retried over the limit", diff("--rules", retried, "--max-newly-retried", "1"), 1, "rules diff: events newly retried: 2, over --max-newly-retried 1"},
		{"newly retried at the limit", diff("--rules", retried, "--max-newly-retried", "2"), 0, ""},
		{"no candidate", diff(), 2, "no candidate: give --rules DIR, --knowledge DIR or --model FILE|none"},
		{"a candidate that does not load", diff("--rules", broken), 2, "the candidate's rules: memory.yaml:"},
		{"a missing model", diff("--model", filepath.Join(data, "no-such-model.json")), 2, "the candidate's model:"},
		{"no ledger", []string{"rules", "diff", "--data-dir", filepath.Join(data, "nowhere"), "--rules", same}, 2, "no ledger at " + filepath.Join(data, "nowhere", "ledger.db")},
		{"no ledger file", diff("--rules", same, "--db", filepath.Join(data, "copy.db")), 2, "no ledger at " + filepath.Join(data, "copy.db")},
		{"an empty ledger", []string{"rules", "diff", "--db", emptyLedger(t), "--rules", changed, "--fail-on-change"}, 0, "the ledger holds no failure event to replay: nothing was checked"},
		{"--last 0", diff("--rules", same, "--last", "0"), 2, "--last 0: want 1 to 100000"},
		{"an argument", diff("--rules", same, "extra"), 2, "rules diff takes no arguments"},
		{"an unknown flag", diff("--rules", same, "--no-such-flag"), 2, "unknown flag: --no-such-flag"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runCmd(t, "", c.args...)
			if code != c.code || !strings.Contains(errOut, c.wantStderr) {
				t.Errorf("%v = exit %d, stderr %q; want exit %d, stderr with %q", c.args, code, errOut, c.code, c.wantStderr)
			}
			if c.wantStderr == "" && errOut != "" {
				t.Errorf("%v: stderr %q, want none", c.args, errOut)
			}
		})
	}
}

// TestRulesDiffReadsTheLedgerAndConfigurationItIsGiven: --db takes a SQLite file (a
// copy of serve's ledger), and the classifier in use is the configuration's.
func TestRulesDiffReadsTheLedgerAndConfigurationItIsGiven(t *testing.T) {
	data, _ := diffLedger(t)
	export := filepath.Join(t.TempDir(), "export.db")
	src, err := os.ReadFile(filepath.Join(data, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(export, src, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "", "rules", "diff", "--db", export, "--rules", diffCandidate(t, oomKilledSaysUserCode), "--data-dir", t.TempDir())
	if code != 0 || !strings.Contains(out, "Replayed 20 failure events: 2 changed.") {
		t.Errorf("rules diff --db FILE = exit %d, stderr %q:\n%s", code, errOut, out)
	}

	// serve's configuration names a knowledge directory; the candidate keeps it
	// unless --knowledge replaces it.
	dir := t.TempDir()
	knowledge := filepath.Join(dir, "knowledge")
	if err := os.Mkdir(knowledge, 0o700); err != nil {
		t.Fatal(err)
	}
	config := writeFile(t, dir, "autofix.yaml", "dataDir: "+data+"\nclassifier:\n  knowledge: "+knowledge+"\n")
	writeFile(t, knowledge, "broken.yaml", "table: [not a table name]\n")
	t.Setenv("AUTOFIX_CONFIG", config)
	code, _, errOut = runCmd(t, "", "rules", "diff", "--rules", diffCandidate(t, nil))
	if code != 2 || !strings.Contains(errOut, "the classifier in use: classifier.knowledge: broken.yaml") {
		t.Errorf("rules diff with serve's broken knowledge = exit %d, stderr %q; want exit 2 naming classifier.knowledge", code, errOut)
	}
	code, out, errOut = runCmd(t, "", "rules", "diff", "--config", writeFile(t, dir, "other.yaml", "dataDir: "+data+"\n"), "--rules", diffCandidate(t, nil), "--fail-on-change")
	if code != 0 || !strings.Contains(out, "Replayed 20 failure events: 0 changed.") {
		t.Errorf("rules diff --config FILE = exit %d, stderr %q:\n%s", code, errOut, out)
	}
}

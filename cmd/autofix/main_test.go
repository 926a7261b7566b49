package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// runCmd runs the command line and returns its exit status, stdout and stderr.
func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

type resultLine struct {
	ID         string   `json:"id"`
	Category   string   `json:"category"`
	Retryable  bool     `json:"retryable"`
	Action     string   `json:"action"`
	Confidence float64  `json:"confidence"`
	Rules      []string `json:"rules"`
	Evidence   []string `json:"evidence"`
	Line       int      `json:"line"`
	Error      string   `json:"error"`
}

func parseLines(t *testing.T, out string) []resultLine {
	t.Helper()
	var res []resultLine
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r resultLine
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("output line %q is not JSON: %v", line, err)
		}
		res = append(res, r)
	}
	return res
}

func TestClassifyBundledSamples(t *testing.T) {
	code, out, errOut := runCmd(t, "", "classify")
	if code != 0 {
		t.Fatalf("autofix classify = exit %d, stderr %q", code, errOut)
	}
	want := map[string]struct {
		category, action string
		retryable        bool
	}{
		"sample-oomkilled":        {"oom_memory", "increase_memory", true},
		"sample-cuda-oom":         {"oom_gpu", "increase_gpu_memory", true},
		"sample-nccl-timeout":     {"timeout", "extend_timeout", true},
		"sample-shm":              {"disk_full", "increase_shm", true},
		"sample-device-assert":    {"data_error", "no_retry", false},
		"sample-image-missing":    {"image_pull", "no_retry", false},
		"sample-registry-timeout": {"image_pull", "retry_backoff", true},
		"sample-preempted":        {"preempted", "retry_backoff", true},
		// A service account missing for now (retry) or for good (configuration):
		// the rules say the first, as the labelling guide does; the model doubts it
		// (P(a retry fixes it) about 0.35) but not below its veto (0.3, tested in
		// the classifier's own tests).
		"sample-missing-sa": {"dependency_unavailable", "retry_backoff", true},
		"sample-user-code":  {"user_code", "no_retry", false},
	}
	res := parseLines(t, out)
	if len(res) != len(want) {
		t.Fatalf("got %d result lines, want %d:\n%s", len(res), len(want), out)
	}
	for _, r := range res {
		w, ok := want[r.ID]
		if !ok {
			t.Errorf("unexpected result id %q", r.ID)
			continue
		}
		if r.Category != w.category || r.Action != w.action || r.Retryable != w.retryable {
			t.Errorf("%s = %s/%s/%v, want %s/%s/%v", r.ID, r.Category, r.Action, r.Retryable, w.category, w.action, w.retryable)
		}
		if r.ID == "sample-missing-sa" && !slices.ContainsFunc(r.Evidence, func(e string) bool { return strings.Contains(e, "the learned model says") }) {
			t.Errorf("%s: evidence %q does not say what the model thought", r.ID, r.Evidence)
		}
		if len(r.Rules) == 0 || len(r.Evidence) == 0 || r.Confidence < 0.5 {
			t.Errorf("%s: rules %v, evidence %q, confidence %v: want rules, evidence and confidence >= 0.5", r.ID, r.Rules, r.Evidence, r.Confidence)
		}
	}
}

func TestClassifyGoesOnAfterBadLines(t *testing.T) {
	in := strings.Join([]string{
		`{"id":"ok-1","job":{"name":"j"},"failure":{"reason":"OOMKilled","exitCode":137}}`,
		`not json`,
		``,
		`{"id":"no-name","job":{},"failure":{}}`,
		`{"id":"big","job":{"name":"j"},"failure":{"logTail":"` + strings.Repeat("x", 1<<20) + `"}}`,
		`{"id":"bad-mem","job":{"name":"j","resources":{"memory":"lots"}},"failure":{}}`,
		`{"id":"ok-2","job":{"name":"j"},"failure":{"reason":"DeadlineExceeded"}}`,
	}, "\n")
	code, out, errOut := runCmd(t, in, "classify", "-")
	if code != 1 {
		t.Errorf("exit status = %d, want 1 when some lines fail", code)
	}
	if !strings.Contains(errOut, "4 line(s) of standard input could not be classified") {
		t.Errorf("stderr = %q, want a count of the failed lines", errOut)
	}
	res := parseLines(t, out)
	if len(res) != 6 {
		t.Fatalf("got %d output lines, want 6 (blank lines are skipped):\n%s", len(res), out)
	}
	checks := []struct {
		line            int
		id, category    string
		errorStartsWith string
	}{
		{0, "ok-1", "oom_memory", ""},
		{2, "", "", "payload: not valid JSON"},
		{4, "", "", "job.name: required"},
		{5, "", "", "payload: over the 1048576-byte limit"},
		{6, "", "", "job.resources.memory: invalid quantity"},
		{7, "ok-2", "timeout", ""},
	}
	for i, c := range checks {
		r := res[i]
		if c.errorStartsWith != "" {
			if r.Line != c.line || !strings.HasPrefix(r.Error, c.errorStartsWith) {
				t.Errorf("output %d = line %d error %q, want line %d error %q...", i, r.Line, r.Error, c.line, c.errorStartsWith)
			}
			continue
		}
		if r.ID != c.id || r.Category != c.category {
			t.Errorf("output %d = %s %s, want %s %s", i, r.ID, r.Category, c.id, c.category)
		}
	}
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const customRule = `rules:
  - id: flaky-storage
    description: our storage gateway's transient error
    expr: has("gateway hiccup")
    category: network_transient
    retryable: true
    action: retry_backoff
    confidence: 0.9
    priority: 10
tests:
  - name: hiccup
    event: {failure: {logTail: "gateway hiccup at 10:00"}}
    expect: {category: network_transient}
`

func TestClassifyWithRulesDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "custom.yaml", customRule)
	events := writeFile(t, dir, "events.jsonl", `{"id":"e","job":{"name":"j"},"failure":{"logTail":"Gateway Hiccup!"}}`+"\n"+
		`{"id":"o","job":{"name":"j"},"failure":{"reason":"OOMKilled"}}`+"\n")
	code, out, errOut := runCmd(t, "", "classify", "--rules", dir, events)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	res := parseLines(t, out)
	if res[0].Category != "network_transient" || res[0].Rules[0] != "flaky-storage" {
		t.Errorf("custom rule: got %+v", res[0])
	}
	// --rules replaces the default rules: none of them fires on OOMKilled (the
	// learned model still answers, from the text alone).
	if len(res[1].Rules) != 0 {
		t.Errorf("--rules replaces the defaults, yet rules %v fired on OOMKilled", res[1].Rules)
	}
	// Without the model either, OOMKilled is unknown to this set.
	code, out, errOut = runCmd(t, "", "classify", "--rules", dir, "--model", "none", events)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if res := parseLines(t, out); res[1].Category != "unknown" || res[1].Action != "no_retry" || len(res[1].Rules) != 0 {
		t.Errorf("--rules and --model none: OOMKilled is unknown to this set; got %+v", res[1])
	}
}

func TestClassifyEval(t *testing.T) {
	dir := t.TempDir()
	labelled := writeFile(t, dir, "l.jsonl",
		`{"id":"a","job":{"name":"j"},"failure":{"reason":"OOMKilled"},"expected":{"category":"oom_memory","retryable":true}}`+"\n"+
			`{"id":"b","job":{"name":"j"},"failure":{"logTail":"nothing to see"},"expected":{"category":"timeout","retryable":true}}`+"\n")
	code, out, errOut := runCmd(t, "", "classify", "--model", "none", "--eval", labelled, "-v")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"precision", "recall", "category accuracy:        0.500 (1/2)", "retry-decision accuracy:  0.500 (1/2)", "false retries:            0", "missed retries:           1", "line 2 b: want timeout/true, got unknown/false"} {
		if !strings.Contains(out, want) {
			t.Errorf("--eval output lacks %q:\n%s", want, out)
		}
	}
}

func TestRulesCheck(t *testing.T) {
	code, out, errOut := runCmd(t, "", "rules", "check")
	if code != 0 || !strings.Contains(out, "embedded rules:") || !strings.Contains(out, "tests passed") {
		t.Errorf("rules check of the defaults = exit %d, %q %q", code, out, errOut)
	}

	good := t.TempDir()
	writeFile(t, good, "custom.yaml", customRule)
	if code, out, errOut := runCmd(t, "", "rules", "check", good); code != 0 || !strings.Contains(out, "1 rules compiled, 1 tests passed") {
		t.Errorf("rules check of a good dir = exit %d, %q %q", code, out, errOut)
	}

	broken := t.TempDir()
	writeFile(t, broken, "bad.yaml", strings.Replace(customRule, `has("gateway hiccup")`, `has(gateway)`, 1))
	code, _, errOut = runCmd(t, "", "rules", "check", broken)
	if code != 1 || !strings.Contains(errOut, "bad.yaml:2: flaky-storage: expr: has() takes string literals only") {
		t.Errorf("rules check of a broken rule = exit %d, stderr %q; want exit 1 naming file, line and rule", code, errOut)
	}

	failing := t.TempDir()
	writeFile(t, failing, "f.yaml", strings.Replace(customRule, "expect: {category: network_transient}", "expect: {category: timeout}", 1))
	code, _, errOut = runCmd(t, "", "rules", "check", failing)
	if code != 1 || !strings.Contains(errOut, `f.yaml:11: test "hiccup": category = network_transient`) || !strings.Contains(errOut, "1 of 1 tests failed") {
		t.Errorf("rules check with a failing test = exit %d, stderr %q", code, errOut)
	}
}

func TestRulesList(t *testing.T) {
	code, out, _ := runCmd(t, "", "rules", "list")
	if code != 0 || !strings.Contains(out, "oom-killed") || !strings.Contains(out, "memory.yaml:") {
		t.Errorf("rules list = exit %d:\n%s", code, out)
	}
}

func TestBadUsage(t *testing.T) {
	if code, _, errOut := runCmd(t, "", "classify", "--no-such-flag"); code == 0 || !strings.Contains(errOut, "unknown flag") {
		t.Errorf("unknown flag: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "", "classify", "/no/such/file"); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "", "classify", "--min-confidence", "1.5"); code != 1 || !strings.Contains(errOut, "--min-confidence 1.5: want a number in (0, 1]") {
		t.Errorf("bad --min-confidence: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "", "classify", "--rules", "/no/such/dir"); code != 1 || !strings.Contains(errOut, "rules: no rule files") {
		t.Errorf("missing rules dir: exit %d, stderr %q", code, errOut)
	}
}

// Every command that touches what serve touches reads serve's configuration: from
// --config, or from $AUTOFIX_CONFIG (set in the pod), with its flags over it.
func TestCommandsReadServesConfiguration(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "autofix.yaml")
	data := filepath.Join(dir, "serve-data")
	if err := os.WriteFile(file, []byte("dataDir: "+data+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"ledger"}, {"policy", "status"}, {"token", "list"}} {
		t.Setenv("AUTOFIX_CONFIG", file)
		code, out, errOut := runCmd(t, "", args...)
		switch args[0] {
		case "token": // the token file is created where serve's is
			if code != 0 || !strings.Contains(out+errOut, "no tokens") && !strings.Contains(out, "NAME") {
				t.Errorf("%v: %d %q %q", args, code, out, errOut)
			}
		default:
			if code == 0 || !strings.Contains(errOut, filepath.Join(data, "ledger.db")) {
				t.Errorf("%v with AUTOFIX_CONFIG: exit %d, %q; want it to look for serve's ledger in %s", args, code, errOut, data)
			}
		}
		// A flag over the file.
		other := filepath.Join(dir, "other")
		if args[0] != "token" {
			if _, _, errOut := runCmd(t, "", append(args, "--data-dir", other)...); !strings.Contains(errOut, filepath.Join(other, "ledger.db")) {
				t.Errorf("%v --data-dir: %q; want the flag's directory", args, errOut)
			}
		}
	}
	// A configuration that is not valid stops every command, naming the field.
	if err := os.WriteFile(file, []byte("kafka:\n  partitions: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, "", "ledger", "--config", file); code == 0 || !strings.Contains(errOut, "kafka.partitions") {
		t.Errorf("ledger with a bad config: %d %q", code, errOut)
	}
}

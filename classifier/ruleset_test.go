package classifier

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// rule returns a YAML rule entry with the given id, expr, category and priority.
func rule(id, expr, category string, priority int, confidence float64) string {
	retryable, action := "true", "retry_backoff"
	switch category {
	case "user_code", "config_error", "data_error":
		retryable, action = "false", "no_retry"
	}
	return "  - id: " + id + "\n" +
		"    description: test rule " + id + "\n" +
		"    expr: '" + strings.ReplaceAll(expr, "'", "''") + "'\n" +
		"    category: " + category + "\n" +
		"    retryable: " + retryable + "\n" +
		"    action: " + action + "\n" +
		"    confidence: " + strconv.FormatFloat(confidence, 'g', -1, 64) + "\n" +
		"    priority: " + strconv.Itoa(priority) + "\n"
}

func mustLoad(t *testing.T, files map[string]string) *RuleSet {
	t.Helper()
	rs, err := Load(mapFS(files))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return rs
}

func mapFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

func TestLoadRejectsBadRules(t *testing.T) {
	good := rule("good", `has("x")`, "timeout", 10, 0.9)
	tests := []struct {
		name string
		file string
		// wants are substrings the error must contain.
		wants []string
	}{
		{"compile error", "rules:\n" + good + rule("typo", `reasn == "OOMKilled"`, "oom_memory", 10, 0.9),
			[]string{"a.yaml:10: typo: expr: unknown name reasn"}},
		{"type error", "rules:\n" + rule("int-vs-string", `exitCode == "137"`, "oom_memory", 10, 0.9),
			[]string{"a.yaml:2: int-vs-string: expr: invalid operation"}},
		{"not a bool", "rules:\n" + rule("not-bool", `exitCode + 1`, "oom_memory", 10, 0.9),
			[]string{"not-bool: expr: expected bool"}},
		{"bad regex", "rules:\n" + rule("bad-re", "grep(`(unclosed`)", "oom_memory", 10, 0.9),
			[]string{"bad-re: expr: grep(\"(unclosed\")", "missing closing )"}},
		{"helper needs literal", "rules:\n" + rule("var-arg", `has(message)`, "oom_memory", 10, 0.9),
			[]string{"var-arg: expr: has() takes string literals only"}},
		{"empty pattern", "rules:\n" + rule("empty", `logHas("")`, "oom_memory", 10, 0.9),
			[]string{"empty: expr: logHas(): empty pattern"}},
		{"after needs two lists", "rules:\n" + rule("after1", `logHasAfter(["x"])`, "timeout", 10, 0.9),
			[]string{"after1: expr: logHasAfter() takes two lists"}},
		{"after needs lists", "rules:\n" + rule("after2", `logHasAfter("x", "y")`, "timeout", 10, 0.9),
			[]string{"after2: expr: logHasAfter(): argument 1 must be a list"}},
		{"after needs literals", "rules:\n" + rule("after3", `logHasAfter(["x"], [message])`, "timeout", 10, 0.9),
			[]string{"after3: expr: logHasAfter() takes string literals only"}},
		{"after needs markers", "rules:\n" + rule("after4", `logHasAfter(["x"], [])`, "timeout", 10, 0.9),
			[]string{"after4: expr: logHasAfter(): argument 2 must be a list"}},
		{"after's phrase holds a marker", "rules:\n" + rule("after5", `logHasAfter(["network error"], ["error"])`, "timeout", 10, 0.9),
			[]string{`after5: expr: logHasAfter(): the phrase "network error" and the marker "error" contain one another`}},
		{"unknown category", "rules:\n" + rule("cat", `has("x")`, "oom", 10, 0.9),
			[]string{`cat: category "oom": not a category of the taxonomy`}},
		{"unknown is not a rule category", "rules:\n" + rule("unk", `has("x")`, "unknown", 10, 0.9),
			[]string{`category "unknown"`}},
		{"confidence range", "rules:\n" + rule("conf", `has("x")`, "timeout", 10, 1.5),
			[]string{"conf: confidence 1.5: want a number in (0, 1]"}},
		{"priority range", "rules:\n" + rule("prio", `has("x")`, "timeout", 5000, 0.5),
			[]string{"prio: priority 5000"}},
		{"bad id", "rules:\n" + rule("Bad Id", `has("x")`, "timeout", 10, 0.5),
			[]string{`id "Bad Id"`}},
		{"unknown field", "rules:\n" + good + "    severity: high\n",
			[]string{"a.yaml", "field severity not found"}},
		{"missing retryable", "rules:\n  - id: r\n    description: d\n    expr: has(\"x\")\n    category: timeout\n    action: extend_timeout\n    confidence: 0.5\n    priority: 1\n",
			[]string{"r: retryable: required"}},
		{"action contradicts retryable", "rules:\n  - id: r\n    description: d\n    expr: has(\"x\")\n    category: timeout\n    retryable: false\n    action: extend_timeout\n    confidence: 0.5\n    priority: 1\n",
			[]string{`r: action "extend_timeout" contradicts retryable: false`}},
		{"not yaml", "rules: [\n", []string{"a.yaml: yaml:"}},
		{"test names unknown rule", "rules:\n" + good + "tests:\n  - name: t\n    event: {failure: {}}\n    expect: {category: timeout, rules: [nope]}\n",
			[]string{`t: expect.rules names unknown rule "nope"`}},
		{"test event invalid", "rules:\n" + good + "tests:\n  - name: t\n    event: {failure: {exitCode: \"x\"}}\n    expect: {category: timeout}\n",
			[]string{"t: event.failure.exitCode: want a number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Load(mapFS(map[string]string{"a.yaml": tt.file}))
			if err == nil {
				t.Fatalf("Load succeeded with %d rules, want an error", len(rs.Rules()))
			}
			if rs != nil {
				t.Errorf("Load returned a rule set along with its error: a bad file must not half-load")
			}
			for _, want := range tt.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Load error =\n%v\nwant it to contain %q", err, want)
				}
			}
			var le *LoadError
			if !errors.As(err, &le) || le.File != "a.yaml" {
				t.Errorf("Load error %v does not unwrap to a *LoadError naming a.yaml", err)
			}
		})
	}
}

func TestLoadReportsEveryProblemAndDuplicateIDs(t *testing.T) {
	_, err := Load(mapFS(map[string]string{
		"a.yaml": "rules:\n" + rule("same", `has("x")`, "timeout", 10, 0.9) + rule("broken", `nope`, "timeout", 1, 0.5),
		"b.yaml": "rules:\n" + rule("same", `has("y")`, "timeout", 10, 0.9),
	}))
	if err == nil {
		t.Fatal("Load succeeded, want errors")
	}
	for _, want := range []string{"a.yaml:10: broken: expr:", "b.yaml:2: same: duplicate rule id, first defined at a.yaml:2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error =\n%v\nwant it to contain %q", err, want)
		}
	}
}

func TestLoadNeedsRuleFiles(t *testing.T) {
	if _, err := Load(mapFS(map[string]string{"README.md": "no rules"})); err == nil {
		t.Error("Load of a directory without *.yaml succeeded, want an error")
	}
}

func TestLoadOrdersByPriority(t *testing.T) {
	rs := mustLoad(t, map[string]string{
		"a.yaml": "rules:\n" + rule("low", `has("x")`, "timeout", 1, 0.9) + rule("high", `has("x")`, "timeout", 50, 0.9),
		"b.yml":  "rules:\n" + rule("mid", `has("x")`, "timeout", 10, 0.9),
	})
	var got []string
	for _, r := range rs.Rules() {
		got = append(got, r.ID)
	}
	if strings.Join(got, ",") != "high,mid,low" {
		t.Errorf("Rules() order = %v, want [high mid low]", got)
	}
}

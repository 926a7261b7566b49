package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/classifier"
)

// candidate is a rule file with one rule whose condition is expr.
func candidate(id, expr string) string {
	return `rules:
  - id: ` + id + `
    description: a candidate
    category: oom_memory
    retryable: true
    action: increase_memory
    confidence: 0.9
    priority: 500
    expr: '` + strings.ReplaceAll(expr, "'", "''") + `'
`
}

func rulesTestBody(t *testing.T, files map[string]string) string {
	t.Helper()
	body, err := json.Marshal(RulesTestRequest{Files: files, Event: json.RawMessage(oomEvent)})
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestRulesTestRefusesHostileRules sends candidates that would exhaust the server's
// memory or a core if they compiled: each is refused with a 400 naming the file and
// the rule, before anything runs.
func TestRulesTestRefusesHostileRules(t *testing.T) {
	e := newEnv(t)
	for name, expr := range map[string]string{
		"repeat":          `repeat(log, 300000) != ""`,
		"reduce doubling": `reduce(1..40, #acc + #acc, log) != ""`,
		"huge range":      `len(1..1000000000) > 0`,
		"nested loops":    `count(lines, count(lines, true) > 0) > 0`,
	} {
		t.Run(name, func(t *testing.T) {
			status, b, _ := e.call("POST", "/v1/rules:test", auth.Admin, rulesTestBody(t, map[string]string{"hostile.yaml": candidate("grow", expr)}))
			got := wantError(t, status, b, http.StatusBadRequest, "files.hostile.yaml")
			if !strings.Contains(got.Message, "hostile.yaml:2: grow: expr: ") || !strings.Contains(got.Message, "not allowed") {
				t.Errorf("message %q does not name the file, the rule and the construct refused", got.Message)
			}
		})
	}
}

// TestRulesTestBoundsStringGrowth sends a candidate that doubles a string: it loads,
// and the rule fails on its string budget instead of building the string.
func TestRulesTestBoundsStringGrowth(t *testing.T) {
	e := newEnv(t)
	// The event's 27-byte log doubled 17 times: 3.5 MiB.
	expr := "let s0 = log; "
	for i := 1; i <= 17; i++ {
		expr += fmt.Sprintf("let s%d = s%d + s%d; ", i, i-1, i-1)
	}
	expr += "len(s17) > 0"
	status, b, _ := e.call("POST", "/v1/rules:test", auth.Admin, rulesTestBody(t, map[string]string{"grow.yaml": candidate("grow", expr)}))
	var res RulesTestResult
	if status != http.StatusOK || json.Unmarshal(b, &res) != nil {
		t.Fatalf("rules:test: %d %s", status, b)
	}
	if len(res.RuleErrors) != 1 || !strings.Contains(res.RuleErrors[0], "rule grow: the rule builds more than 1048576 bytes of strings") {
		t.Errorf("rule errors = %q, want grow to fail on its string budget", res.RuleErrors)
	}
}

// TestRulesTestGivesUpAtTheDeadline runs a candidate on a server whose requests have
// no time at all: the handler must stop and say why, not run the candidate.
func TestRulesTestGivesUpAtTheDeadline(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Timeout = time.Nanosecond })
	status, b, _ := e.call("POST", "/v1/rules:test", auth.Admin, rulesTestBody(t, map[string]string{"mine.yaml": candidate("my-oom", `reason == "OOMKilled"`)}))
	got := wantError(t, status, b, http.StatusServiceUnavailable, "files")
	if !strings.Contains(got.Message, "the candidate rules did not finish within the request's time limit") ||
		!strings.Contains(got.Message, "deadline exceeded") {
		t.Errorf("message %q does not say the candidate ran out of time", got.Message)
	}
}

// Candidate rules are tried as the service applies rules: with its minimum
// confidence (classifier.minConfidence), not a fixed 0.5.
func TestRulesTestUsesTheServicesMinConfidence(t *testing.T) {
	for _, c := range []struct {
		min  float64
		want string
	}{{0.5, "oom_memory"}, {0.95, "unknown"}} {
		e := newEnv(t, func(o *Options) {
			rs := o.Classifier.RuleSet()
			o.Classifier = classifier.New(rs, classifier.Options{MinConfidence: c.min})
		})
		status, b, _ := e.call("POST", "/v1/rules:test", auth.Admin, rulesTestBody(t, map[string]string{"mine.yaml": candidate("my-oom", `reason == "OOMKilled"`)}))
		if status != http.StatusOK {
			t.Fatalf("rules:test: %d %s", status, b)
		}
		var res RulesTestResult
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		if got := string(res.Classification.Category); got != c.want {
			t.Errorf("a 0.9 rule with the service's minimum %g: %s, want %s", c.min, got, c.want)
		}
	}
}

package classifier

import (
	"bytes"
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
)

func TestReadLabelled(t *testing.T) {
	in := `{"id":"a","job":{"name":"j"},"failure":{"logTail":"x"},"expected":{"category":"timeout","retryable":true},"source":"https://example.org/1"}

{"id":"b","job":{"name":"j"},"failure":{},"expected":{"category":"unknown","retryable":false}}
`
	items, err := ReadLabelled(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Source != "https://example.org/1" || items[1].Line != 3 || items[1].Expected.Category != failure.Unknown {
		t.Errorf("ReadLabelled = %+v", items)
	}
	for name, bad := range map[string]string{
		"line 1: expected: required":              `{"id":"a","job":{"name":"j"},"failure":{}}`,
		"line 1: failure: required":               `{"id":"a","job":{"name":"j"},"expected":{"category":"timeout","retryable":true}}`,
		`line 1: expected: unknown category`:      `{"id":"a","job":{"name":"j"},"failure":{},"expected":{"category":"slow","retryable":true}}`,
		"line 1: expected: json: cannot unmar":    `{"id":"a","job":{"name":"j"},"failure":{},"expected":{"category":"timeout","retryable":"yes"}}`,
		`line 1: second: unknown category "slow"`: `{"id":"a","job":{"name":"j"},"failure":{},"expected":{"category":"timeout","retryable":true},"second":{"category":"slow","retryable":true}}`,
		"line 1: second.category: required":       `{"id":"a","job":{"name":"j"},"failure":{},"expected":{"category":"timeout","retryable":true},"second":{"retryable":true},"ambiguous":true}`,
		"line 1: second.retryable: required":      `{"id":"a","job":{"name":"j"},"failure":{},"expected":{"category":"timeout","retryable":true},"second":{"category":"timeout"}}`,
		"line 1: ambiguous: true needs":           `{"id":"a","job":{"name":"j"},"failure":{},"expected":{"category":"timeout","retryable":true},"ambiguous":true}`,
		"line 1: second: differs":                 `{"id":"a","job":{"name":"j"},"failure":{},"expected":{"category":"timeout","retryable":true},"second":{"category":"config_error","retryable":false}}`,
		"line 2: bufio.Scanner: token too long":   "\n" + `{"id":"a","job":{"name":"j"},"failure":{"logTail":"` + strings.Repeat("x", failure.MaxPayload) + `"}}`,
	} {
		if _, err := ReadLabelled(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("ReadLabelled(%s) error = %v, want %q", bad, err, name)
		}
	}
}

func TestEvaluate(t *testing.T) {
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" +
		rule("t", `has("slow")`, "timeout", 10, 0.9) + rule("c", `has("typo")`, "user_code", 10, 0.9)})
	item := func(log string, cat failure.Category, retry bool) Labelled {
		return Labelled{Event: *event("", 1, "", log), Expected: Label{Category: cat, Retryable: retry}}
	}
	r := Evaluate(New(rs, Options{}), []Labelled{
		item("slow", failure.Timeout, true),             // right
		item("slow", failure.ConfigError, false),        // wrong category, false retry
		item("typo", failure.UserCode, false),           // right
		item("typo", failure.DataError, false),          // wrong category, right retry decision
		item("nothing", failure.NetworkTransient, true), // unknown: missed retry
	})
	if r.Total != 5 || r.CategoryCorrect != 2 || r.RetryCorrect != 3 || r.FalseRetries != 1 || r.MissedRetries != 1 {
		t.Errorf("Evaluate = %+v", r)
	}
	if len(r.Mistakes) != 3 {
		t.Errorf("Mistakes = %d, want 3", len(r.Mistakes))
	}
	stats := map[failure.Category]CategoryStats{}
	for _, s := range r.PerCategory {
		stats[s.Category] = s
	}
	if s := stats[failure.Timeout]; s.Support != 1 || s.Predicted != 2 || s.Precision() != 0.5 || s.Recall() != 1 {
		t.Errorf("timeout stats = %+v precision %v recall %v, want support 1, predicted 2, 0.5, 1", s, s.Precision(), s.Recall())
	}
	if s := stats[failure.NetworkTransient]; s.Recall() != 0 || s.Precision() != 0 {
		t.Errorf("network stats = %+v", s)
	}
	var out bytes.Buffer
	if err := r.Write(&out, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"category accuracy:", "0.400 (2/5)", "retry-decision accuracy:", "0.600 (3/5)", "false retries:", "mistakes:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// Where two labellers disagreed, an answer that agrees with either is right, and a
// retry is false only when both said no retry can fix the failure.
func TestEvaluateEitherLabel(t *testing.T) {
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" +
		rule("t", `has("slow")`, "timeout", 10, 0.9) + rule("c", `has("typo")`, "user_code", 10, 0.9)})
	item := func(log string, first, second Label) Labelled {
		it := Labelled{Event: *event("", 1, "", log), Expected: first}
		if first != second {
			it.Ambiguous, it.Second = true, &second
		}
		return it
	}
	timeout, config := Label{failure.Timeout, true}, Label{failure.ConfigError, false}
	code, data := Label{failure.UserCode, false}, Label{failure.DataError, false}
	r := Evaluate(New(rs, Options{}), []Labelled{
		item("slow", config, timeout), // the second label's answer: right in both
		item("slow", config, code),    // neither: wrong, a false retry both would call one
		item("typo", data, code),      // the second's category: right
		item("typo", code, code),      // unambiguous, right
	})
	if r.CategoryCorrect != 1 || r.FalseRetries != 2 {
		t.Errorf("against the first labels: category %d right, %d false retries; want 1 and 2", r.CategoryCorrect, r.FalseRetries)
	}
	e := r.Either
	if e == nil {
		t.Fatal("Either = nil with ambiguous items")
	}
	if e.CategoryCorrect != 3 || e.RetryCorrect != 3 || e.FalseRetries != 1 || e.NotRetryable != 3 {
		t.Errorf("either label: category %d, retry %d right, %d false retries of %d not retryable; want 3, 3, 1 of 3",
			e.CategoryCorrect, e.RetryCorrect, e.FalseRetries, e.NotRetryable)
	}
	var out bytes.Buffer
	if err := r.Write(&out, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "either label:             category 0.750, retry decision 0.750, false retries 1 (33.3% of the 3 both labellers called not retryable)") {
		t.Errorf("report does not give the either-label figures:\n%s", out.String())
	}
	if Evaluate(New(rs, Options{}), []Labelled{item("typo", code, code)}).Either != nil {
		t.Error("Either set without ambiguous items")
	}
	// Category and retry decision are scored apart: a category from one label and a
	// retry decision from the other both count.
	mixed := Evaluate(New(rs, Options{}), []Labelled{item("typo", data, Label{failure.UserCode, true})}).Either
	if mixed.CategoryCorrect != 1 || mixed.RetryCorrect != 1 {
		t.Errorf("user_code/false against data_error/false and user_code/true: %+v; want both counted right", *mixed)
	}
}

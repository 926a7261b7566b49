package classifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/autofix/autofix/failure"
)

// TestCase is an example event a rule file ships with, and what classifying it with
// the whole rule set must give.
type TestCase struct {
	Name   string
	Event  failure.Event
	Expect Expectation
	File   string
	Line   int
}

// Expectation is what a test case checks; empty fields are not checked.
type Expectation struct {
	Category  failure.Category
	Retryable *bool
	Action    failure.Action
	// Rules must all be among the rules that support the category.
	Rules []string
	// Evidence are substrings each of which some evidence line must contain.
	Evidence []string
}

type testSpec struct {
	Name   string         `yaml:"name"`
	Event  map[string]any `yaml:"event"`
	Expect struct {
		Category  string   `yaml:"category"`
		Retryable *bool    `yaml:"retryable"`
		Action    string   `yaml:"action"`
		Rules     []string `yaml:"rules"`
		Evidence  []string `yaml:"evidence"`
	} `yaml:"expect"`
}

// testCase validates a test spec. The event is decoded by failure.Decode, as events
// from Kafka are; id and job.name default to the test's name.
func (s *testSpec) testCase() (TestCase, error) {
	tc := TestCase{Name: s.Name}
	if strings.TrimSpace(s.Name) == "" {
		return tc, errors.New("name: required")
	}
	if s.Event == nil {
		return tc, errors.New("event: required")
	}
	ev := s.Event
	if _, ok := ev["id"]; !ok {
		ev["id"] = s.Name
	}
	if job, ok := ev["job"].(map[string]any); !ok {
		ev["job"] = map[string]any{"name": s.Name}
	} else if _, ok := job["name"]; !ok {
		job["name"] = s.Name
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return tc, fmt.Errorf("event: %w", err)
	}
	if tc.Event, err = failure.Decode(data); err != nil {
		return tc, fmt.Errorf("event.%w", err)
	}
	e := &tc.Expect
	e.Category = failure.Category(s.Expect.Category)
	if !e.Category.Valid() {
		return tc, fmt.Errorf("expect.category %q: not a category of the taxonomy", s.Expect.Category)
	}
	e.Retryable = s.Expect.Retryable
	if s.Expect.Action != "" {
		if e.Action = failure.Action(s.Expect.Action); !e.Action.Valid() {
			return tc, fmt.Errorf("expect.action %q: not a known action", s.Expect.Action)
		}
	}
	e.Rules, e.Evidence = s.Expect.Rules, s.Expect.Evidence
	return tc, nil
}

// TestFailure is a test case whose classification was not as expected.
type TestFailure struct {
	Case     TestCase
	Got      failure.Classification
	Problems []string
}

func (f TestFailure) Error() string {
	return fmt.Sprintf("%s:%d: test %q: %s", f.Case.File, f.Case.Line, f.Case.Name, strings.Join(f.Problems, "; "))
}

// Check classifies every test case of the rule set with c and returns those that
// fail, in file order.
func (c *Classifier) Check() []TestFailure {
	out, _ := c.CheckContext(context.Background())
	return out
}

// CheckContext is Check for rule sets that may be expensive (an untrusted candidate):
// it returns ctx's error, naming the test case it stopped at, once ctx is done. It
// looks between rules, as ClassifyContext does.
func (c *Classifier) CheckContext(ctx context.Context) ([]TestFailure, error) {
	var out []TestFailure
	for _, tc := range c.rules.tests {
		got, _, err := c.ClassifyContext(ctx, &tc.Event)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: test %q: %w", tc.File, tc.Line, tc.Name, err)
		}
		if problems := tc.Expect.check(got); len(problems) > 0 {
			out = append(out, TestFailure{Case: tc, Got: got, Problems: problems})
		}
	}
	return out, nil
}

func (e *Expectation) check(got failure.Classification) []string {
	var p []string
	if got.Category != e.Category {
		p = append(p, fmt.Sprintf("category = %s (rules %v), want %s", got.Category, got.Rules, e.Category))
	}
	if e.Retryable != nil && got.Retryable != *e.Retryable {
		p = append(p, fmt.Sprintf("retryable = %v, want %v", got.Retryable, *e.Retryable))
	}
	if e.Action != "" && got.Action != e.Action {
		p = append(p, fmt.Sprintf("action = %s, want %s", got.Action, e.Action))
	}
	for _, id := range e.Rules {
		if !slices.Contains(got.Rules, id) {
			p = append(p, fmt.Sprintf("rule %s did not support the result (rules %v)", id, got.Rules))
		}
	}
	for _, want := range e.Evidence {
		if !slices.ContainsFunc(got.Evidence, func(line string) bool { return strings.Contains(line, want) }) {
			p = append(p, fmt.Sprintf("no evidence line contains %q (evidence %q)", want, got.Evidence))
		}
	}
	return p
}

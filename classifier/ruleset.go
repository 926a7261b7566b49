package classifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/autofix/autofix/failure"
)

// Rule is one compiled rule of a rule set.
type Rule struct {
	ID          string
	Description string
	// Expr is the condition, an expr-lang expression over Env.
	Expr       string
	Category   failure.Category
	Retryable  bool
	Action     failure.Action
	Confidence float64
	// Priority orders evidence: the category of the highest-priority matching rule wins.
	Priority int
	// File and Line say where the rule is defined.
	File string
	Line int

	compiled
}

// RuleSet is a compiled, validated set of rules and their test cases. It is immutable
// and safe for concurrent use.
type RuleSet struct {
	rules    []*Rule // by priority, highest first, then in file order
	tests    []TestCase
	literals *literalSet
	keys     [][3]string     // literal id -> the variable its hits set, by scope
	uses     map[string]bool // the variables some rule reads
	fields   []envField      // the Env fields some rule reads
	// triggers maps a literal's scope and id to the indexes in rules of the rules a
	// hit of it triggers (whose trigger lists it), so that a classification marks the
	// rules its literal hits trigger instead of checking every rule's list.
	triggers [3][][]int32
}

// Rules returns the rules, highest priority first.
func (rs *RuleSet) Rules() []*Rule { return rs.rules }

// Digest identifies what a model that reads the rules' matches depends on: a SHA-256
// over each rule's id, condition and category (the features are the ids and
// categories of the rules that match), in id order. A model trained with the rules'
// matches as features records it and is used only with rules of the same digest;
// a change of confidence, priority, retry decision or action keeps it.
func (rs *RuleSet) Digest() string {
	rules := slices.Clone(rs.rules)
	slices.SortFunc(rules, func(a, b *Rule) int { return strings.Compare(a.ID, b.ID) })
	h := sha256.New()
	for _, r := range rules {
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", r.ID, r.Expr, r.Category)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Tests returns the test cases of the rule files.
func (rs *RuleSet) Tests() []TestCase { return rs.tests }

// LoadError is a problem with one rule or test of a rule file.
type LoadError struct {
	File string
	Line int
	// Rule is the id of the rule or the name of the test case, if known.
	Rule string
	Err  error
}

func (e *LoadError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, ": %s", e.Rule)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *LoadError) Unwrap() error { return e.Err }

// ruleFile is the YAML shape of a rule file.
type ruleFile struct {
	Rules []ruleSpec `yaml:"rules"`
	Tests []testSpec `yaml:"tests"`
}

type ruleSpec struct {
	ID          string   `yaml:"id"`
	Description string   `yaml:"description"`
	Expr        string   `yaml:"expr"`
	Category    string   `yaml:"category"`
	Retryable   *bool    `yaml:"retryable"`
	Action      string   `yaml:"action"`
	Confidence  *float64 `yaml:"confidence"`
	Priority    *int     `yaml:"priority"`
}

var ruleIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,79}$`)

// maxRuleFileBytes bounds a rule file.
const maxRuleFileBytes = 4 << 20

// MaxPriority bounds a rule's priority.
const MaxPriority = 1000

// Load reads every *.yaml and *.yml file at the root of fsys, validates and compiles
// its rules and test cases, and returns the rule set. Any problem in any file fails the
// whole load — a rule set never half-loads — and the error lists every problem found,
// each a *LoadError naming the file, line and rule.
func Load(fsys fs.FS) (*RuleSet, error) {
	return LoadContext(context.Background(), fsys)
}

// LoadContext is Load for rule files that may be large or hostile (an untrusted
// candidate): it gives up with ctx's error, naming the rule it stopped at, once ctx is
// done. It looks between rules; compiling one rule is bounded by the limits of the
// rule language.
func LoadContext(ctx context.Context, fsys fs.FS) (*RuleSet, error) {
	var names []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := fs.Glob(fsys, pat)
		if err != nil {
			return nil, err
		}
		names = append(names, m...)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, errors.New("no rule files (*.yaml) found")
	}

	var (
		errs  []error
		specs []located
		rs    = &RuleSet{}
	)
	for _, name := range names {
		data, err := readLimited(fsys, name, maxRuleFileBytes)
		if err != nil {
			errs = append(errs, &LoadError{File: name, Err: err})
			continue
		}
		fileSpecs, tests, ferrs := parseFile(name, data)
		specs = append(specs, fileSpecs...)
		rs.tests = append(rs.tests, tests...)
		errs = append(errs, ferrs...)
	}

	// Every literal is registered before any rule compiles, so that the variables
	// the helpers compile to can be declared to the type checker.
	reg := &literalRegistry{}
	stopped := func(s *located) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("gave up loading the rules at %s:%d (%s): %w", s.file, s.line, s.ID, err)
		}
		return nil
	}
	for i := range specs {
		s := &specs[i]
		if err := stopped(s); err != nil {
			return nil, err
		}
		s.vars, s.exprErr = registerLiterals(s.Expr, reg)
	}
	fields := envTypes(&literalRegistry{})
	where := map[string]string{} // rule id -> file:line of its first definition
	for _, s := range specs {
		if err := stopped(&s); err != nil {
			return nil, err
		}
		r, err := s.compile(reg, ruleEnv(fields, s.vars))
		if err != nil {
			errs = append(errs, &LoadError{File: s.file, Line: s.line, Rule: s.ID, Err: err})
			continue
		}
		if prev, dup := where[r.ID]; dup {
			errs = append(errs, &LoadError{File: r.File, Line: r.Line, Rule: r.ID, Err: fmt.Errorf("duplicate rule id, first defined at %s", prev)})
			continue
		}
		where[r.ID] = fmt.Sprintf("%s:%d", r.File, r.Line)
		rs.rules = append(rs.rules, r)
	}
	for _, tc := range rs.tests {
		for _, id := range tc.Expect.Rules {
			if _, ok := where[id]; !ok {
				errs = append(errs, &LoadError{File: tc.File, Line: tc.Line, Rule: tc.Name, Err: fmt.Errorf("expect.rules names unknown rule %q", id)})
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortStableFunc(rs.rules, func(a, b *Rule) int { return b.Priority - a.Priority })
	if err := checkAutomaton("the literals of the rules' search helpers", reg.literals); err != nil {
		return nil, err
	}
	rs.literals = newLiteralSet(reg.literals)
	rs.keys = reg.keys
	for sc := range rs.triggers {
		rs.triggers[sc] = make([][]int32, len(reg.literals))
	}
	for i, r := range rs.rules {
		for _, l := range r.trigger {
			rs.triggers[l.scope][l.id] = append(rs.triggers[l.scope][l.id], int32(i)) //nolint:gosec // rules number far below 2^31
		}
	}
	rs.uses = map[string]bool{}
	for _, r := range rs.rules {
		for id := range r.idents {
			rs.uses[id] = true
		}
	}
	rs.fields = usedFields(rs.uses)
	return rs, nil
}

// located is a rule spec and where it is defined.
type located struct {
	ruleSpec
	file string
	line int
	// vars are the variables its helpers compile to; exprErr is why its condition
	// is refused (see registerLiterals).
	vars    []string
	exprErr error
}

// parseFile decodes one rule file strictly.
func parseFile(name string, data []byte) ([]located, []TestCase, []error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, []error{&LoadError{File: name, Err: err}}
	}
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, nil, []error{&LoadError{File: name, Err: err}}
	}
	ruleLines, testLines := itemLines(&doc, "rules"), itemLines(&doc, "tests")

	specs := make([]located, 0, len(f.Rules))
	for i, spec := range f.Rules {
		specs = append(specs, located{ruleSpec: spec, file: name, line: ruleLines[i]})
	}
	var errs []error
	tests := make([]TestCase, 0, len(f.Tests))
	for i, spec := range f.Tests {
		tc, err := spec.testCase()
		tc.File, tc.Line = name, testLines[i]
		if err != nil {
			errs = append(errs, &LoadError{File: name, Line: tc.Line, Rule: spec.Name, Err: err})
			continue
		}
		tests = append(tests, tc)
	}
	return specs, tests, errs
}

// itemLines returns the line of each item of the top-level sequence key.
func itemLines(doc *yaml.Node, key string) []int {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			var lines []int
			for _, item := range m.Content[i+1].Content {
				lines = append(lines, item.Line)
			}
			return lines
		}
	}
	return nil
}

func (s *located) compile(reg *literalRegistry, env map[string]any) (*Rule, error) {
	r := &Rule{ID: s.ID, Description: strings.TrimSpace(s.Description), Expr: s.Expr, File: s.file, Line: s.line}
	switch {
	case !ruleIDPattern.MatchString(s.ID):
		return r, fmt.Errorf("id %q: want lower-case letters, digits, '.', '_' or '-', at most 80", s.ID)
	case r.Description == "":
		return r, errors.New("description: required")
	case strings.TrimSpace(s.Expr) == "":
		return r, errors.New("expr: required")
	case s.Retryable == nil:
		return r, errors.New("retryable: required")
	case s.Confidence == nil:
		return r, errors.New("confidence: required")
	case s.Priority == nil:
		return r, errors.New("priority: required")
	}
	r.Category = failure.Category(s.Category)
	if !r.Category.Valid() || r.Category == failure.Unknown {
		return r, fmt.Errorf("category %q: not a category of the taxonomy", s.Category)
	}
	r.Action = failure.Action(s.Action)
	if !r.Action.Valid() {
		return r, fmt.Errorf("action %q: not a known action", s.Action)
	}
	r.Retryable, r.Confidence, r.Priority = *s.Retryable, *s.Confidence, *s.Priority
	if r.Retryable == (r.Action == failure.NoRetry) {
		return r, fmt.Errorf("action %q contradicts retryable: %v", r.Action, r.Retryable)
	}
	if !(r.Confidence > 0 && r.Confidence <= 1) {
		return r, fmt.Errorf("confidence %v: want a number in (0, 1]", r.Confidence)
	}
	if r.Priority < 0 || r.Priority > MaxPriority {
		return r, fmt.Errorf("priority %d: want 0 to %d", r.Priority, MaxPriority)
	}
	if s.exprErr != nil {
		return r, fmt.Errorf("expr: %w", s.exprErr)
	}
	c, err := compileRule(s.Expr, reg, env)
	if err != nil {
		return r, fmt.Errorf("expr: %w", err)
	}
	r.compiled = c
	return r, nil
}

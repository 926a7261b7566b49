package classifier

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// scope is the part of a failure's text a helper searches.
type scope uint8

const (
	scopeAny     scope = iota // reason, message and log tail
	scopeLog                  // log tail
	scopeMessage              // termination / condition message
)

// helper describes one of the rules' search functions. All are case-insensitive and
// take string literals only, so that every pattern is compiled once, at load.
type helper struct {
	scope scope
	regex bool
}

var helpers = map[string]helper{
	"has":     {scopeAny, false},
	"logHas":  {scopeLog, false},
	"msgHas":  {scopeMessage, false},
	"grep":    {scopeAny, true},
	"logGrep": {scopeLog, true},
	"msgGrep": {scopeMessage, true},
}

// Env field names the helpers compile to, by scope.
var (
	hitField   = [...]string{scopeAny: "hitAny", scopeLog: "hitLog", scopeMessage: "hitMessage"}
	lowerField = [...]string{scopeAny: "textLower", scopeLog: "logLower", scopeMessage: "messageLower"}
)

// pattern is one helper argument of a rule, kept to find the evidence lines.
type pattern struct {
	scope   scope
	literal string         // lower-cased; set for has() helpers
	re      *regexp.Regexp // runs on lower-cased text; set for grep() helpers
}

// literalRegistry gives each distinct lower-cased literal of a rule set an id.
type literalRegistry struct {
	ids      map[string]int
	literals []string
}

func (r *literalRegistry) id(lit string) int {
	if id, ok := r.ids[lit]; ok {
		return id
	}
	if r.ids == nil {
		r.ids = map[string]int{}
	}
	r.ids[lit] = len(r.literals)
	r.literals = append(r.literals, lit)
	return len(r.literals) - 1
}

// helperPatcher rewrites helper calls, at compile time, into expr's own operations:
// has("x") becomes a lookup in the hits of the rule set's literal scan, and grep("re")
// becomes `lower-cased text matches "re"` (a constant pattern that expr compiles once),
// guarded by the scan's hit of a literal every match must contain.
type helperPatcher struct {
	reg      *literalRegistry
	patterns []pattern
	err      error
}

func (p *helperPatcher) Visit(node *ast.Node) {
	call, ok := (*node).(*ast.CallNode)
	if !ok {
		return
	}
	callee, ok := call.Callee.(*ast.IdentifierNode)
	if !ok {
		return
	}
	h, ok := helpers[callee.Value]
	if !ok {
		return
	}
	if len(call.Arguments) == 0 {
		p.fail(fmt.Errorf("%s() needs at least one pattern", callee.Value))
		return
	}
	var repl ast.Node
	for _, arg := range call.Arguments {
		s, ok := arg.(*ast.StringNode)
		if !ok {
			p.fail(fmt.Errorf("%s() takes string literals only (patterns are compiled when the rules load)", callee.Value))
			return
		}
		if s.Value == "" {
			p.fail(fmt.Errorf("%s(): empty pattern", callee.Value))
			return
		}
		var n ast.Node
		if h.regex {
			lowered, required, err := lowerRegex(s.Value)
			if err != nil {
				p.fail(fmt.Errorf("%s(%q): %w", callee.Value, s.Value, err))
				return
			}
			n = &ast.BinaryNode{
				Operator: "matches",
				Left:     &ast.IdentifierNode{Value: lowerField[h.scope]},
				Right:    &ast.StringNode{Value: lowered},
			}
			if len(required) >= 2 {
				n = &ast.BinaryNode{Operator: "and", Left: p.hit(h.scope, required), Right: n}
			}
			p.patterns = append(p.patterns, pattern{scope: h.scope, re: regexp.MustCompile(lowered)})
		} else {
			lit := strings.ToLower(s.Value)
			n = p.hit(h.scope, lit)
			p.patterns = append(p.patterns, pattern{scope: h.scope, literal: lit})
		}
		if repl == nil {
			repl = n
		} else {
			repl = &ast.BinaryNode{Operator: "or", Left: repl, Right: n}
		}
	}
	ast.Patch(node, repl)
}

func (p *helperPatcher) hit(sc scope, lit string) ast.Node {
	return &ast.MemberNode{
		Node:     &ast.IdentifierNode{Value: hitField[sc]},
		Property: &ast.IntegerNode{Value: p.reg.id(lit)},
	}
}

func (p *helperPatcher) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// lowerRegex rewrites a case-insensitive pattern into an equivalent case-sensitive one
// over lower-cased text, so that Go's regexp can use its literal-prefix scan, and
// returns a literal that every match contains ("" if there is none). ^ and $ match at
// line boundaries.
func lowerRegex(pattern string) (lowered, required string, err error) {
	re, err := syntax.Parse(pattern, (syntax.Perl&^syntax.OneLine)|syntax.FoldCase)
	if err != nil {
		return "", "", err
	}
	lowerLiterals(re)
	lowered = re.String()
	if _, err := regexp.Compile(lowered); err != nil {
		return "", "", fmt.Errorf("rewritten pattern %q: %w", lowered, err)
	}
	return lowered, requiredLiteral(re), nil
}

func lowerLiterals(re *syntax.Regexp) {
	if re.Op == syntax.OpLiteral && re.Flags&syntax.FoldCase != 0 {
		for i, r := range re.Rune {
			re.Rune[i] = unicode.ToLower(r)
		}
		re.Flags &^= syntax.FoldCase
	}
	for _, sub := range re.Sub {
		lowerLiterals(sub)
	}
}

// requiredLiteral returns the longest literal that every match of re contains.
func requiredLiteral(re *syntax.Regexp) string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase == 0 {
			return string(re.Rune)
		}
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiteral(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiteral(re.Sub[0])
		}
	case syntax.OpConcat:
		best := ""
		for _, sub := range re.Sub {
			if lit := requiredLiteral(sub); len(lit) > len(best) {
				best = lit
			}
		}
		return best
	}
	return ""
}

// compiled is a rule's program and what static analysis found in it.
type compiled struct {
	program  *vm.Program
	patterns []pattern
	idents   map[string]bool // env fields the rule reads
}

// compileRule compiles one condition against Env, rewriting its helpers.
func compileRule(source string, reg *literalRegistry) (compiled, error) {
	p := &helperPatcher{reg: reg}
	program, err := expr.Compile(source, expr.Env(Env{}), expr.AsBool(), expr.Patch(p))
	if p.err != nil {
		return compiled{}, p.err
	}
	if err != nil {
		return compiled{}, err
	}
	c := compiled{program: program, patterns: p.patterns, idents: map[string]bool{}}
	root := program.Node()
	ast.Walk(&root, identVisitor(c.idents))
	return c, nil
}

type identVisitor map[string]bool

func (v identVisitor) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok {
		v[id.Value] = true
	}
}

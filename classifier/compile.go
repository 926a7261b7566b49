package classifier

import (
	"fmt"
	"strings"

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

// lowerField names the lower-cased text each scope's regexes run on.
var lowerField = [...]string{scopeAny: "textLower", scopeLog: "logLower", scopeMessage: "messageLower"}

// stateVar names the variable that holds the event's *state, for _grep.
const stateVar = "_st"

// hitPrefix starts the names of the boolean variables a literal scan sets, by scope.
var hitPrefix = [...]string{scopeAny: "_any", scopeLog: "_log", scopeMessage: "_msg"}

// helperPatcher rewrites helper calls at compile time: has("x") becomes a boolean
// variable set by the rule set's one literal scan per event, and grep("re") becomes
// _grep(lower-cased text, id) — the regex compiled once, run line by line — behind a
// guard of the literals every match must contain, so that it runs only on events that
// can match. Run over a parsed tree first, it only registers literals and regexes.
type helperPatcher struct {
	reg      *literalRegistry
	patterns []pattern
	insts    int // RE2 instructions of the grep() patterns so far
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
	if callee.Value == afterHelper {
		p.patchAfter(node, call)
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
		s, err := patternArg(callee.Value, arg)
		if err != nil {
			p.fail(err)
			return
		}
		var n ast.Node
		if h.regex {
			lowered, guard, err := lowerRegex(s.Value)
			var insts int
			if err == nil {
				insts, err = regexInsts(lowered)
			}
			if err != nil {
				p.fail(fmt.Errorf("%s(%q): %w", callee.Value, s.Value, err))
				return
			}
			if p.insts += insts; p.insts > maxRegexInsts {
				p.fail(fmt.Errorf("%s(%q): the condition's grep patterns compile to %d RE2 instructions, over the limit of %d in all",
					callee.Value, s.Value, p.insts, maxRegexInsts))
				return
			}
			id := p.reg.regex(h.scope, lowered, guard)
			n = &ast.CallNode{
				Callee: &ast.IdentifierNode{Value: "_grep"},
				Arguments: []ast.Node{
					&ast.IdentifierNode{Value: lowerField[h.scope]},
					&ast.IntegerNode{Value: id},
					&ast.IdentifierNode{Value: stateVar},
				},
			}
			for i := len(guard) - 1; i >= 0; i-- {
				n = &ast.BinaryNode{Operator: "and", Left: p.anyHit(h.scope, guard[i]), Right: n}
			}
			p.patterns = append(p.patterns, pattern{scope: h.scope, re: p.reg.regexes[id]})
		} else {
			lit := strings.ToLower(s.Value)
			key := p.reg.key(h.scope, lit)
			n = &ast.IdentifierNode{Value: key}
			p.patterns = append(p.patterns, pattern{scope: h.scope, literal: lit, needs: []literal{p.reg.byKey[key]}})
		}
		repl = or(repl, n)
	}
	ast.Patch(node, repl)
}

// patternArg returns a search helper's argument n, which must be a non-empty string
// literal within maxPatternBytes; name is the helper's, for the error.
func patternArg(name string, n ast.Node) (*ast.StringNode, error) {
	s, ok := n.(*ast.StringNode)
	switch {
	case !ok:
		return nil, fmt.Errorf("%s() takes string literals only (patterns are compiled when the rules load)", name)
	case s.Value == "":
		return nil, fmt.Errorf("%s(): empty pattern", name)
	case len(s.Value) > maxPatternBytes:
		return nil, fmt.Errorf("%s(): a pattern of %d bytes, over the limit of %d", name, len(s.Value), maxPatternBytes)
	}
	return s, nil
}

// anyHit is true when any of lits occurs in the scope.
func (p *helperPatcher) anyHit(sc scope, lits []string) ast.Node {
	var n ast.Node
	for _, lit := range lits {
		n = or(n, &ast.IdentifierNode{Value: p.reg.key(sc, lit)})
	}
	return n
}

func or(a, b ast.Node) ast.Node {
	if a == nil {
		return b
	}
	return &ast.BinaryNode{Operator: "or", Left: a, Right: b}
}

func (p *helperPatcher) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// compiled is a rule's program and what static analysis found in it.
type compiled struct {
	program  *vm.Program
	patterns []pattern
	idents   map[string]bool // env fields the rule reads
	// trigger lists literals at least one of which must occur for the rule to match;
	// nil when the rule can match without any (it then always runs).
	trigger []literal
}

// registerLiterals parses a condition, checking it against the limits of the rule
// language (see parseRule), and registers the literals its helpers use, so that the
// variables they compile to can be declared before any rule is compiled. It returns
// the names of the variables this condition's helpers compile to, or parseRule's
// error, which compileRule then reports.
func registerLiterals(source string, reg *literalRegistry) ([]string, error) {
	tree, err := parseRule(source)
	if err != nil {
		return nil, err
	}
	ast.Walk(&tree.Node, &helperPatcher{reg: reg})
	idents := identVisitor{}
	ast.Walk(&tree.Node, idents)
	var vars []string
	for name := range idents {
		if _, ok := reg.byKey[name]; ok {
			vars = append(vars, name)
		}
	}
	return vars, nil
}

// compileRule compiles one condition, which registerLiterals has checked, against
// env, the variables it may read, rewriting its helpers and its string
// concatenations.
func compileRule(source string, reg *literalRegistry, env map[string]any) (compiled, error) {
	p, cp := &helperPatcher{reg: reg}, &concatPatcher{}
	opts := append([]expr.Option{expr.Env(env), expr.AsBool(), expr.Patch(p), expr.Patch(cp), reg.grepFunc(), reg.afterFunc(), concatOption()},
		builtinOptions()...)
	program, err := expr.Compile(source, opts...)
	if p.err != nil {
		return compiled{}, p.err
	}
	if err != nil {
		return compiled{}, err
	}
	if cp.err != nil {
		return compiled{}, cp.err
	}
	c := compiled{program: program, patterns: p.patterns, idents: map[string]bool{}}
	root := program.Node()
	ast.Walk(&root, identVisitor(c.idents))
	c.trigger = trigger(root, reg)
	return c, nil
}

// trigger returns literals at least one of which must occur for node to be true, or
// nil if node can be true without any: a hit variable needs its literal; "a or b"
// needs a literal of a or of b; "a and b" needs what either needs.
func trigger(node ast.Node, reg *literalRegistry) []literal {
	switch n := node.(type) {
	case *ast.IdentifierNode:
		if lit, ok := reg.byKey[n.Value]; ok {
			return []literal{lit}
		}
	case *ast.BinaryNode:
		switch n.Operator {
		case "or", "||":
			l, r := trigger(n.Left, reg), trigger(n.Right, reg)
			if l == nil || r == nil {
				return nil
			}
			return append(l, r...)
		case "and", "&&":
			if l := trigger(n.Left, reg); l != nil {
				return l
			}
			return trigger(n.Right, reg)
		}
	}
	return nil
}

type identVisitor map[string]bool

func (v identVisitor) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok {
		v[id.Value] = true
	}
}

package classifier

import (
	"errors"
	"fmt"
	"reflect"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/parser"
)

// Why evaluating a rule is bounded
//
// Rule files are untrusted: an operator's typo, a hot-loaded file or the body of an
// admin's POST /v1/rules:test. expr's own memory budget does not protect the process:
// it does not charge string +, and it charges repeat() and friends after they have
// allocated. So the rule language is cut down, before anything compiles, to constructs
// whose cost has a static bound:
//
//   - parseRule admits only an allow-list of constructs (allowedOperators,
//     allowedBuiltins, the search helpers, member and slice access, conditionals, array
//     literals, let). None of them loops: expr's only loops are predicates (#, closures,
//     all/any/map/filter/reduce...) and ranges (..), and both are refused. So the
//     compiled program never jumps backwards and each node runs at most once.
//   - A condition has at most maxExprBytes of source and maxExprNodes nodes, so a
//     rule runs at most maxExprNodes operations (and the parser's recursion, which
//     follows nesting, is bounded by the source length).
//   - Each admitted operation costs time linear in its operands and allocates nothing
//     bigger than them: comparisons, contains/startsWith/endsWith, in, indexing,
//     slicing (no copy), the numeric builtins, trim (spaces only: a cutset would make
//     it quadratic), indexOf. Operands are the event's fields, at most
//     failure.MaxPayload bytes (their lower-cased copies at most three times that), or
//     strings the rule built.
//   - The one operation that builds a string is +: on strings it compiles to
//     _concat, which charges every byte to a budget of maxBuiltBytes per evaluation
//     and fails the rule past it, before allocating. Doubling a string with let or
//     nested + therefore stops after a few steps. Array literals hold at most
//     maxExprNodes elements and are charged to expr's own budget.
//   - Search helpers take literals of at most maxPatternBytes. Their regexes are RE2:
//     time linear in the text times the program, never backtracking; a condition's
//     grep() calls have at most maxRegexInsts instructions in all.
//
// One evaluation of one rule thus allocates at most maxBuiltBytes plus a few bytes a
// node, and does at most maxExprNodes operations, each linear in its operands (a few
// MiB at most), plus regex work of at most the text's length times maxRegexInsts. On
// a 64 KiB log tail that is milliseconds for any sensible rule and about a second for
// a regex and a text built to defeat each other (a 1 MiB message: proportionally
// more). A rule set costs the sum over its rules; a caller that runs untrusted sets
// (POST /v1/rules:test) stops between rules with LoadContext, ClassifyContext and
// CheckContext once its deadline passes, so it overruns by at most one rule's bound.
const (
	// maxExprBytes bounds the source of a condition, in bytes (the default rules'
	// longest is about 1.2 KiB).
	maxExprBytes = 8 << 10
	// maxExprNodes bounds the nodes of a condition: names, literals, operators, calls
	// and their arguments (the default rules' largest has 60).
	maxExprNodes = 500
	// maxPatternBytes bounds one pattern of a search helper, in bytes.
	maxPatternBytes = 1 << 10
	// maxRegexInsts bounds the compiled programs of a condition's grep() patterns,
	// all calls together, in RE2 instructions: a regex costs up to the text's length
	// times its program (the default rules' largest total is about 400).
	maxRegexInsts = 1000
	// maxBuiltBytes bounds the bytes of the strings one evaluation of one rule may
	// build with +.
	maxBuiltBytes = 1 << 20
)

// allowedBuiltins are the expr builtins a condition may call, with the most arguments
// each may take (0: what the builtin itself allows). They take no predicate and return
// a number, a bool or a substring of an argument.
var allowedBuiltins = map[string]int{
	"len": 0, "abs": 0, "ceil": 0, "floor": 0, "round": 0, "int": 0, "float": 0, "min": 0, "max": 0,
	"trim": 1, "trimPrefix": 0, "trimSuffix": 0, "hasPrefix": 0, "hasSuffix": 0, "indexOf": 0, "lastIndexOf": 0,
}

// allowedOperators are the binary operators a condition may use.
var allowedOperators = map[string]bool{
	"or": true, "||": true, "and": true, "&&": true, "??": true,
	"==": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true,
	"in": true, "contains": true, "startsWith": true, "endsWith": true,
	"+": true, "-": true, "*": true, "/": true, "%": true, "**": true, "^": true,
}

// refusedOperators say why the other operators are refused.
var refusedOperators = map[string]string{
	"..":      "ranges (..) are not allowed: a rule does not iterate",
	"matches": "matches is not allowed: use grep(), logGrep() or msgGrep(), whose patterns are compiled once and run line by line",
}

// parseRule checks a condition's size and parses it, and checks that it uses only the
// constructs of the rule language (see ruleChecker).
func parseRule(source string) (*parser.Tree, error) {
	if len(source) > maxExprBytes {
		return nil, fmt.Errorf("the condition is %d bytes, over the limit of %d", len(source), maxExprBytes)
	}
	// The length bounds the parse: no node limit here, so that ruleChecker can count
	// the nodes and say how many there are.
	cfg := conf.CreateNew()
	cfg.MaxNodes = 0
	tree, err := parser.ParseWithConfig(source, cfg)
	if err != nil {
		return nil, err
	}
	c := &ruleChecker{}
	ast.Walk(&tree.Node, c)
	if c.err != nil {
		return nil, c.err
	}
	if c.nodes > maxExprNodes {
		return nil, fmt.Errorf("the condition has %d nodes (names, literals, operators, calls), over the limit of %d", c.nodes, maxExprNodes)
	}
	return tree, nil
}

// ruleChecker walks a parsed condition, counting its nodes and refusing every construct
// not on the allow-list.
type ruleChecker struct {
	nodes int
	err   error
	// inner is set when err is about a predicate: the walk visits children first, and
	// the builtin that takes the predicate (reduce, all...) names the problem better.
	inner bool
}

func (c *ruleChecker) Visit(node *ast.Node) {
	c.nodes++
	if c.err != nil && !c.inner {
		return
	}
	err := checkNode(*node)
	if err == nil {
		return
	}
	switch (*node).(type) {
	case *ast.PredicateNode, *ast.PointerNode:
		if c.err == nil {
			c.err, c.inner = err, true
		}
	default:
		c.err, c.inner = err, false
	}
}

// checkNode returns why node may not appear in a condition, or nil.
func checkNode(node ast.Node) error {
	switch n := node.(type) {
	case *ast.NilNode, *ast.BoolNode, *ast.IntegerNode, *ast.FloatNode, *ast.StringNode,
		*ast.ChainNode, *ast.SliceNode, *ast.ConditionalNode, *ast.ArrayNode, *ast.SequenceNode:
		return nil
	case *ast.IdentifierNode:
		return checkName(n.Value)
	case *ast.VariableDeclaratorNode:
		return checkName(n.Name)
	case *ast.UnaryNode:
		return nil // not, !, - and +
	case *ast.BinaryNode:
		if allowedOperators[n.Operator] {
			return nil
		}
		if why, ok := refusedOperators[n.Operator]; ok {
			return errors.New(why)
		}
		return fmt.Errorf("the operator %s is not allowed", n.Operator)
	case *ast.MemberNode:
		if n.Method {
			return errors.New("methods cannot be called")
		}
		return nil
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			if _, ok := helpers[id.Value]; ok || id.Value == afterHelper {
				return nil
			}
			return fmt.Errorf("%s() is not a function of the rule language (%s)", id.Value, functionList())
		}
		return fmt.Errorf("only named functions can be called (%s)", functionList())
	case *ast.BuiltinNode:
		most, ok := allowedBuiltins[n.Name]
		if !ok {
			return fmt.Errorf("%s() is not allowed in a rule (%s)", n.Name, functionList())
		}
		if most > 0 && len(n.Arguments) > most {
			return fmt.Errorf("%s() takes at most %d argument(s) in a rule", n.Name, most)
		}
		return nil
	case *ast.PredicateNode, *ast.PointerNode:
		return errors.New("predicates (#, {...}) are not allowed: a rule does not iterate")
	case *ast.MapNode, *ast.PairNode:
		return errors.New("map literals are not allowed")
	}
	return fmt.Errorf("%T is not allowed in a rule", node)
}

// checkName refuses the names the compiled rules use for their own variables.
func checkName(name string) error {
	if strings.HasPrefix(name, "_") || strings.HasPrefix(name, "$") {
		return fmt.Errorf("the name %s is reserved (names starting with _ or $)", name)
	}
	return nil
}

// functionList names the functions a condition may call.
func functionList() string {
	names := make([]string, 0, len(helpers)+1+len(allowedBuiltins))
	names = append(names, afterHelper)
	for name := range helpers {
		names = append(names, name)
	}
	slices.Sort(names)
	builtins := make([]string, 0, len(allowedBuiltins))
	for name := range allowedBuiltins {
		builtins = append(builtins, name)
	}
	slices.Sort(builtins)
	return "allowed: " + strings.Join(append(names, builtins...), ", ")
}

// builtinOptions turns off every expr builtin but the allowed ones, so that the
// compiler itself refuses what parseRule does, and bounds the nodes it accepts
// (parseRule's count is the one reported; the patches add a few nodes).
func builtinOptions() []expr.Option {
	opts := []expr.Option{expr.DisableAllBuiltins(), expr.MaxNodes(2 * maxExprNodes)}
	for name := range allowedBuiltins {
		opts = append(opts, expr.EnableBuiltin(name))
	}
	return opts
}

// concatFunc names the function string + compiles to.
const concatFunc = "_concat"

// concatPatcher rewrites a + b on strings into _concat(a, b, _st), which charges the
// bytes to the evaluation's budget. It runs on the type-checked tree: + on numbers
// stays as it is, and a + whose operands have no static type is refused, since at run
// time it could join strings without being charged.
type concatPatcher struct {
	err error
}

func (p *concatPatcher) Visit(node *ast.Node) {
	b, ok := (*node).(*ast.BinaryNode)
	if !ok || b.Operator != "+" {
		return
	}
	switch k := b.Type().Kind(); {
	case k == reflect.String:
		ast.Patch(node, &ast.CallNode{
			Callee:    &ast.IdentifierNode{Value: concatFunc},
			Arguments: []ast.Node{b.Left, b.Right, &ast.IdentifierNode{Value: stateVar}},
		})
	case k >= reflect.Int && k <= reflect.Float64:
	default:
		if p.err == nil {
			p.err = errors.New("+ must add two numbers or join two strings, and the type of its operands is not known here")
		}
	}
}

// concatOption declares _concat: it joins two strings unless that takes the
// evaluation past maxBuiltBytes of built strings, in which case the rule fails.
func concatOption() expr.Option {
	return expr.Function(concatFunc, func(args ...any) (any, error) {
		a, b, st := args[0].(string), args[1].(string), args[2].(*state)
		n := len(a) + len(b)
		if n > maxBuiltBytes-st.built {
			return nil, fmt.Errorf("the rule builds more than %d bytes of strings with +", maxBuiltBytes)
		}
		st.built += n
		return a + b, nil
	}, new(func(string, string, *state) string))
}

// regexInsts returns the size of a lowered grep() pattern's program, in RE2
// instructions.
func regexInsts(lowered string) (int, error) {
	re, err := syntax.Parse(lowered, syntax.Perl)
	if err != nil {
		return 0, err
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0, err
	}
	return len(prog.Inst), nil
}

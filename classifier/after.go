package classifier

import (
	"fmt"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// afterHelper is the rule language's "a phrase after the last error" search:
// logHasAfter(["phrase", ...], ["marker", ...]) is true when one of the phrases occurs
// in the log tail after the last occurrence of every marker: its last occurrence starts
// after the last marker's does (a marker that does not occur places nothing). A phrase
// and a marker may not contain one another. It is for phrases a job can get past, such
// as a download retried after a short read: the phrase counts only when no Python
// traceback or Gradle task starts after it. Both lists are case-insensitive string
// literals.
//
// It compiles to (_logP1 or _logP2 ...) and _after(logLower, id, _st): the phrases'
// hit variables make the literal scan trigger the rule, and _after, run only when one
// of them occurred, compares positions, skipping the markers the scan did not find.
const afterHelper = "logHasAfter"

// afterSpec is one logHasAfter() call: lower-cased phrases and markers, with the
// registered literals of the markers.
type afterSpec struct {
	phrases []string
	markers []literalRef
}

// match reports whether one of the phrases occurs in log after the last marker.
func (a *afterSpec) match(log string, st *state) bool {
	last := -1
	for _, m := range a.markers {
		if st.count(m.literal) == 0 {
			continue
		}
		if i := strings.LastIndex(log, m.text); i > last {
			last = i
		}
	}
	for _, p := range a.phrases {
		if strings.LastIndex(log, p) > last {
			return true
		}
	}
	return false
}

// after registers one logHasAfter() call and returns the id _after reads it by. The
// same lists give the same id, so that registering a rule and compiling it agree.
func (r *literalRegistry) after(phrases, markers []string) int {
	// %q quotes every byte a literal may hold, so that two different calls never share
	// a key (a separator byte could occur inside a literal).
	name := fmt.Sprintf("%q|%q", phrases, markers)
	if id, ok := r.afterIDs[name]; ok {
		return id
	}
	if r.afterIDs == nil {
		r.afterIDs = map[string]int{}
	}
	spec := &afterSpec{phrases: phrases}
	for _, m := range markers {
		spec.markers = append(spec.markers, literalRef{r.byKey[r.key(scopeLog, m)], m})
	}
	id := len(r.afters)
	r.afters = append(r.afters, spec)
	r.afterIDs[name] = id
	return id
}

// afterFunc is the function logHasAfter() compiles to: _after(logLower, id, _st).
func (r *literalRegistry) afterFunc() expr.Option {
	return expr.Function("_after", func(args ...any) (any, error) {
		return r.afters[args[1].(int)].match(args[0].(string), args[2].(*state)), nil
	}, new(func(string, int, *state) bool))
}

// patchAfter rewrites a logHasAfter() call (see afterHelper).
func (p *helperPatcher) patchAfter(node *ast.Node, call *ast.CallNode) {
	if len(call.Arguments) != 2 {
		p.fail(fmt.Errorf("%s() takes two lists: the phrases, then the markers they must come after", afterHelper))
		return
	}
	var lists [2][]string
	for i, arg := range call.Arguments {
		arr, ok := arg.(*ast.ArrayNode)
		if !ok || len(arr.Nodes) == 0 {
			p.fail(fmt.Errorf("%s(): argument %d must be a list of string literals, [\"...\", ...]", afterHelper, i+1))
			return
		}
		for _, n := range arr.Nodes {
			s, err := patternArg(afterHelper, n)
			if err != nil {
				p.fail(err)
				return
			}
			if lit := strings.ToLower(s.Value); !slices.Contains(lists[i], lit) {
				lists[i] = append(lists[i], lit)
			}
		}
	}
	// "After" compares where occurrences start, which says nothing useful when one
	// holds the other: a phrase that contains a marker never starts after the marker's
	// last occurrence in it, and one inside a marker counts within it.
	for _, ph := range lists[0] {
		for _, m := range lists[1] {
			if strings.Contains(ph, m) || strings.Contains(m, ph) {
				p.fail(fmt.Errorf("%s(): the phrase %q and the marker %q contain one another", afterHelper, ph, m))
				return
			}
		}
	}
	var hit ast.Node
	for _, lit := range lists[0] {
		key := p.reg.key(scopeLog, lit)
		hit = or(hit, &ast.IdentifierNode{Value: key})
		p.patterns = append(p.patterns, pattern{scope: scopeLog, literal: lit, needs: []literal{p.reg.byKey[key]}})
	}
	id := p.reg.after(lists[0], lists[1])
	ast.Patch(node, &ast.BinaryNode{Operator: "and", Left: hit, Right: &ast.CallNode{
		Callee: &ast.IdentifierNode{Value: "_after"},
		Arguments: []ast.Node{
			&ast.IdentifierNode{Value: lowerField[scopeLog]},
			&ast.IntegerNode{Value: id},
			&ast.IdentifierNode{Value: stateVar},
		},
	}})
}

package classifier

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/expr-lang/expr"
)

// pattern is one helper argument of a rule, kept to find the evidence lines.
type pattern struct {
	scope   scope
	literal string     // lower-cased; set for has() helpers
	re      *lineRegex // runs on lower-cased text; set for grep() helpers
	// needs lists literals one of which occurs wherever the pattern matches (nil: none
	// known), so that evidence is searched only where it can be.
	needs []literal
}

// literalRegistry gives each distinct lower-cased literal of a rule set an id, and each
// (scope, literal) pair a rule uses the name of the boolean variable that says whether
// the literal occurs in that scope.
type literalRegistry struct {
	ids      map[string]int
	literals []string
	keys     [][3]string // literal id -> variable name by scope, "" if unused
	regexes  []*lineRegex
	reIDs    map[string]int     // lowered pattern -> index in regexes
	byKey    map[string]literal // variable name -> what it stands for
	afters   []*afterSpec       // logHasAfter() calls
	afterIDs map[string]int     // their lists -> index in afters
}

// literal is one (scope, literal id) pair a rule's has() or grep() guard reads.
type literal struct {
	scope scope
	id    int
}

// key registers lit for scope sc and returns the name of its variable.
func (r *literalRegistry) key(sc scope, lit string) string {
	id, ok := r.ids[lit]
	if !ok {
		if r.ids == nil {
			r.ids = map[string]int{}
		}
		id = len(r.literals)
		r.ids[lit] = id
		r.literals = append(r.literals, lit)
		r.keys = append(r.keys, [3]string{})
	}
	if r.keys[id][sc] == "" {
		k := hitPrefix[sc] + strconv.Itoa(id)
		r.keys[id][sc] = k
		if r.byKey == nil {
			r.byKey = map[string]literal{}
		}
		r.byKey[k] = literal{sc, id}
	}
	return r.keys[id][sc]
}

// regex registers a lowered pattern for scope sc with its guard and returns its index.
func (r *literalRegistry) regex(sc scope, lowered string, guard [][]string) int {
	name := hitPrefix[sc] + ":" + lowered
	if id, ok := r.reIDs[name]; ok {
		return id
	}
	if r.reIDs == nil {
		r.reIDs = map[string]int{}
	}
	l := &lineRegex{re: regexp.MustCompile(lowered)}
	for _, c := range guard {
		var refs []literalRef
		for _, lit := range c {
			refs = append(refs, literalRef{r.byKey[r.key(sc, lit)], lit})
		}
		l.clauses = append(l.clauses, refs)
	}
	r.reIDs[name] = len(r.regexes)
	r.regexes = append(r.regexes, l)
	return len(r.regexes) - 1
}

// grepFunc is the function grep() helpers compile to: _grep(text, id, _st) reports
// whether some line of text matches the registered regex id; _st is the event's state.
func (r *literalRegistry) grepFunc() expr.Option {
	return expr.Function("_grep", func(args ...any) (any, error) {
		return r.regexes[args[1].(int)].match(args[0].(string), args[2].(*state)), nil
	}, new(func(string, int, *state) bool))
}

// lineRegex is a regex that matches within one line, with the clauses of literals a
// matching line must contain (one of each clause).
type lineRegex struct {
	re      *regexp.Regexp
	clauses [][]literalRef
}

// literalRef is a registered literal and its text.
type literalRef struct {
	literal
	text string
}

// match reports whether some line of text matches.
func (l *lineRegex) match(text string, st *state) bool {
	found := false
	l.lines(text, st, func(int, int) bool { found = true; return false })
	return found
}

// lines calls fn with the bounds of each line of text that matches, once each, in no
// particular order, until fn returns false. The regex runs only on
// the lines that contain a literal of the clause whose literals occur least often in
// this event (counted by the literal scan), found with strings.Index, so that a regex
// over a long log costs about as much as a substring search.
func (l *lineRegex) lines(text string, st *state, fn func(start, end int) bool) {
	if len(l.clauses) == 0 {
		for pos := 0; pos < len(text); {
			start, end := lineAt(text, pos)
			if l.re.MatchString(text[start:end]) && !fn(start, end) {
				return
			}
			pos = end + 1
		}
		return
	}
	anchor := -1
	fewest := -1
	for ci, c := range l.clauses {
		n := 0
		for _, ref := range c {
			n += st.count(ref.literal)
		}
		if fewest < 0 || n < fewest {
			anchor, fewest = ci, n
		}
	}
	anchors := l.clauses[anchor]
	for k, ref := range anchors {
		if st.count(ref.literal) == 0 {
			continue
		}
		for i := 0; i < len(text); {
			j := strings.Index(text[i:], ref.text)
			if j < 0 {
				break
			}
			start, end := lineAt(text, i+j)
			line := text[start:end]
			// A line holding an earlier anchor has been tried: the regex runs at
			// most once a line, so its cost stays the text's length times its
			// program (see maxRegexInsts). A match lies within its line, so a line
			// that lacks every literal of another clause cannot match either.
			if !triedBefore(line, anchors[:k], st) && l.holdsClauses(line, anchor, st) &&
				l.re.MatchString(line) && !fn(start, end) {
				return
			}
			i = end + 1
		}
	}
}

// holdsClauses reports whether line holds a literal of each clause but the one at
// skip: a guard every match satisfies, and far cheaper than the regex on the lines of
// numbers and words a log is mostly made of. Literals that occur nowhere in this event
// are not looked for.
func (l *lineRegex) holdsClauses(line string, skip int, st *state) bool {
	for ci, c := range l.clauses {
		if ci == skip {
			continue
		}
		held := false
		for _, ref := range c {
			if st.count(ref.literal) > 0 && strings.Contains(line, ref.text) {
				held = true
				break
			}
		}
		if !held {
			return false
		}
	}
	return true
}

// triedBefore reports whether line holds one of the earlier anchors that lines
// scanned for, so that the regex has run on it already.
func triedBefore(line string, earlier []literalRef, st *state) bool {
	for _, ref := range earlier {
		if st.count(ref.literal) > 0 && strings.Contains(line, ref.text) {
			return true
		}
	}
	return false
}

// lineAt returns the bounds of the line of text that holds offset pos, without its
// newline.
func lineAt(text string, pos int) (start, end int) {
	start = strings.LastIndexByte(text[:pos], '\n') + 1
	end = strings.IndexByte(text[pos:], '\n')
	if end < 0 {
		return start, len(text)
	}
	return start, pos + end
}

// lowerRegex rewrites a case-insensitive pattern into an equivalent case-sensitive one
// over lower-cased text, so that Go's regexp can use its literal-prefix scan, and
// returns its guard: clauses of literals such that every match contains, for each
// clause, at least one of its literals. ^ and $ match at line boundaries.
//
// Results are memoised (loweredCache): printing a rewritten pattern checks every rune
// of its wide character classes against Unicode's case folding (regexp/syntax's flag
// inference), some milliseconds a pattern and twenty times that under the race
// detector, and the same rule files are compiled again and again (every reload, every
// candidate a rules diff tries, every test's service). The guard is shared between
// callers and must not be modified.
func lowerRegex(pattern string) (lowered string, guard [][]string, err error) {
	loweredCache.Lock()
	got, ok := loweredCache.m[pattern]
	loweredCache.Unlock()
	if ok {
		return got.lowered, got.guard, nil
	}
	lowered, guard, err = rewriteRegex(pattern)
	if err != nil {
		return "", nil, err
	}
	size := len(pattern) + len(lowered)
	for _, c := range guard {
		for _, lit := range c {
			size += len(lit)
		}
	}
	if size > maxLoweredEntryBytes {
		return lowered, guard, nil // rare, and its size is the caller's limits' business
	}
	loweredCache.Lock()
	defer loweredCache.Unlock()
	if len(loweredCache.m) >= maxLoweredCache || loweredCache.bytes+size > maxLoweredCacheBytes || loweredCache.m == nil {
		// Rule files are untrusted: a stream of new patterns starts the cache over
		// rather than growing it.
		loweredCache.m = make(map[string]loweredRegex)
		loweredCache.bytes = 0
	}
	loweredCache.m[pattern] = loweredRegex{lowered, guard}
	loweredCache.bytes += size
	return lowered, guard, nil
}

// loweredRegex is a memoised result of lowerRegex.
type loweredRegex struct {
	lowered string
	guard   [][]string
}

// Bounds on loweredCache: entries, bytes in all, and the bytes of one entry. The
// embedded rules have a few dozen patterns of under 200 bytes; a pattern's rewrite can
// be far longer than the pattern (\pC repeated prints every control range).
const (
	maxLoweredCache      = 1024
	maxLoweredCacheBytes = 4 << 20
	maxLoweredEntryBytes = 16 << 10
)

var loweredCache struct {
	sync.Mutex
	m     map[string]loweredRegex
	bytes int // of the patterns, rewrites and guards held
}

// rewriteRegex is lowerRegex without the memo.
func rewriteRegex(pattern string) (lowered string, guard [][]string, err error) {
	re, err := syntax.Parse(pattern, (syntax.Perl&^syntax.OneLine)|syntax.FoldCase)
	if err != nil {
		return "", nil, err
	}
	lowerLiterals(re)
	lowered = re.String()
	if _, err := regexp.Compile(lowered); err != nil {
		return "", nil, fmt.Errorf("rewritten pattern %q: %w", lowered, err)
	}
	return lowered, requiredLiterals(re), nil
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

// minGuardLiteral is the shortest literal worth a guard, in bytes.
const minGuardLiteral = 3

// requiredLiterals returns what every match of re contains, as clauses that must all
// hold, each satisfied by any one of its literals. nil means nothing is known.
func requiredLiterals(re *syntax.Regexp) [][]string {
	if set, ok := finiteSet(re); ok {
		return clause(set)
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
	case syntax.OpConcat:
		// Runs of children that match finitely many strings combine into the strings
		// the run matches ("50" then [02-4]: 500, 502, 503, 504); each other child
		// adds its own clauses.
		var out [][]string
		run := []string{""}
		for _, sub := range re.Sub {
			set, ok := finiteSet(sub)
			if ok {
				if prod, ok := product(run, set); ok {
					run = prod
					continue
				}
			}
			out = append(out, clause(run)...)
			run = []string{""}
			if ok {
				run = set
			} else {
				out = append(out, requiredLiterals(sub)...)
			}
		}
		out = append(out, clause(run)...)
		if len(out) == 0 {
			return nil
		}
		return out
	case syntax.OpAlternate:
		var any []string
		for _, sub := range re.Sub {
			best := strongest(requiredLiterals(sub))
			if best == nil {
				return nil
			}
			any = append(any, best...)
		}
		return [][]string{any}
	}
	return nil
}

// maxFiniteSet bounds the strings a finite set of matches may hold.
const maxFiniteSet = 16

// finiteSet returns every string re can match when they are few (a literal, a small
// class, alternations and concatenations of them); zero-width assertions match "".
func finiteSet(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase == 0 {
			return []string{string(re.Rune)}, true
		}
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(out) == maxFiniteSet/2 {
					return nil, false
				}
				out = append(out, string(r))
			}
		}
		return out, len(out) > 0
	case syntax.OpCapture:
		return finiteSet(re.Sub[0])
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return []string{""}, true
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			set, ok := finiteSet(sub)
			if !ok || len(out)+len(set) > maxFiniteSet {
				return nil, false
			}
			out = append(out, set...)
		}
		return out, true
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			set, ok := finiteSet(sub)
			if !ok {
				return nil, false
			}
			if out, ok = product(out, set); !ok {
				return nil, false
			}
		}
		return out, true
	}
	return nil, false
}

// product returns every a+b, if there are at most maxFiniteSet.
func product(as, bs []string) ([]string, bool) {
	if len(as)*len(bs) > maxFiniteSet {
		return nil, false
	}
	out := make([]string, 0, len(as)*len(bs))
	for _, a := range as {
		for _, b := range bs {
			out = append(out, a+b)
		}
	}
	return out, true
}

// clause turns a set of strings, one of which every match contains, into a guard
// clause, unless one of them is too short to be worth it.
func clause(set []string) [][]string {
	if len(set) == 0 {
		return nil
	}
	for _, s := range set {
		if len(s) < minGuardLiteral {
			return nil
		}
	}
	return [][]string{slices.Compact(slices.Sorted(slices.Values(set)))}
}

// strongest picks the clause that filters best: the one whose literals are least
// likely to occur in a log line. Literals with a digit, space or symbol are rarer than
// plain words; then the longer the shortest literal, the better.
func strongest(clauses [][]string) []string {
	var best []string
	bestScore := 0
	for _, c := range clauses {
		shortest, plainWord := len(c[0]), false
		for _, lit := range c {
			shortest = min(shortest, len(lit))
			plainWord = plainWord || strings.IndexFunc(lit, func(r rune) bool { return !unicode.IsLetter(r) }) < 0
		}
		score := shortest
		if !plainWord {
			score += 4
		}
		if score > bestScore || (score == bestScore && len(c) < len(best)) {
			best, bestScore = c, score
		}
	}
	return best
}

package classifier

import (
	"reflect"
	"strings"

	"github.com/expr-lang/expr/vm"

	"github.com/autofix/autofix/failure"
)

// state is the per-goroutine scratch of one classification.
type state struct {
	env     Env
	vars    map[string]any // what the rules read: the used Env fields and the literal hits
	vm      vm.VM
	matched []*Rule
	seen    [3][]uint32 // literal scan marks by scope (scopeAny: the reason)
	counts  [3][]uint16 // occurrences of the literals marked in seen
	// triggered marks with gen the rules (by index in the rule set) that a literal
	// found in this event triggers.
	triggered []uint32
	gen       uint32
	found     []int32
	set       []string // hit variables set true for this event
	// The knowledge tables' hits and the model's features, with their scratch.
	hits      []KnowledgeHit
	knowledge knowledgeScratch
	features  featureScratch
	signals   signals
	// The text being scanned, for extra.
	scanning  *scanner
	scanText  string
	scanScope int
	// line finds where the line of each occurrence starts.
	line    lineCursor
	extraFn func(id int32, end int)
	// built counts the bytes of the strings the rule being evaluated has built with
	// +; it is reset before each rule runs (see maxBuiltBytes).
	built int
}

// prepare fills the variables the rules read for ev, and with sc (nil: the rules'
// literals alone) the knowledge tables' hits and the log's error lines, in the same
// scan of each text.
func (st *state) prepare(ev *failure.Event, rs *RuleSet, sc *scanner) {
	if st.vars == nil {
		st.vars = envTypes(&literalRegistry{keys: rs.keys})
		for sc := range st.seen {
			st.seen[sc] = make([]uint32, len(rs.keys))
			st.counts[sc] = make([]uint16, len(rs.keys))
		}
		st.vars[stateVar] = st
	}
	if len(st.triggered) != len(rs.rules) {
		st.triggered = make([]uint32, len(rs.rules))
	}
	st.env.reset(ev, rs)
	v := reflect.ValueOf(&st.env).Elem()
	for _, f := range rs.fields {
		st.vars[f.name] = v.Field(f.index).Interface()
	}
	st.gen++
	if st.gen == 0 { // wrapped: old marks could collide
		for sc := range st.seen {
			clear(st.seen[sc])
		}
		clear(st.triggered)
		st.gen = 1
	}
	texts := [3]string{scopeAny: strings.ToLower(ev.Failure.Reason), scopeLog: st.env.LogLower, scopeMessage: st.env.MessageLower}
	if sc != nil {
		if st.extraFn == nil {
			st.extraFn = st.onExtra
		}
		st.hits = sc.knowledge.begin(&st.knowledge, ev.Failure.Reason, ev.Failure.ExitCode, st.hits[:0])
		st.features.marks = st.features.marks[:0]
		st.line = lineCursor{} // only the log's occurrences move it
	}
	for scope, text := range texts {
		if sc == nil || scope == int(scopeAny) {
			st.found = rs.literals.scan(text, st.seen[scope], st.counts[scope], st.gen, st.found[:0])
		} else {
			st.scanning, st.scanText, st.scanScope = sc, text, scope
			st.found = sc.all.scanExtra(text, st.seen[scope], st.counts[scope], st.gen, st.found[:0], sc.first, st.extraFn)
		}
		for _, id := range st.found {
			keys := &rs.keys[id]
			st.hit(keys[scope])
			st.hit(keys[scopeAny])
			// A hit in this text triggers the rules that want the literal here or
			// anywhere.
			for _, r := range rs.triggers[scope][id] {
				st.triggered[r] = st.gen
			}
			for _, r := range rs.triggers[scopeAny][id] {
				st.triggered[r] = st.gen
			}
		}
	}
	if sc != nil {
		if sc.separate {
			st.hits = sc.knowledge.phrasesIn(&st.knowledge, st.hits, st.env.MessageLower, st.env.LogLower)
		}
		sortHits(st.hits)
	}
}

// onExtra handles an occurrence of a pattern that is not a rule's literal: a
// knowledge table's phrase, or a word that marks an error line of the log.
func (st *state) onExtra(id int32, end int) {
	sc := st.scanning
	if id < sc.errorWords {
		st.hits = sc.knowledge.phraseAt(&st.knowledge, id-sc.first, st.scanText, end, st.hits)
		return
	}
	if st.scanScope == int(scopeLog) {
		start := st.line.startOf(st.scanText, end)
		if n := len(st.features.marks); n == 0 || st.features.marks[n-1] != start {
			st.features.marks = append(st.features.marks, start)
		}
	}
}

// lineCursor finds the starts of the lines of occurrences that end further and
// further into a text: it looks for a line break only in what is new since the last
// one, so that a long line is not searched again and again.
type lineCursor struct {
	start int // where the line of the last occurrence starts
	// searched is how far the text has been searched: every byte once.
	searched int
}

// startOf returns where the line that holds text[end-1] starts; end must not be
// before the last end given.
func (l *lineCursor) startOf(text string, end int) int {
	if i := strings.LastIndexByte(text[l.searched:end], '\n'); i >= 0 {
		l.start = l.searched + i + 1
	}
	l.searched = end
	return l.start
}

func (st *state) hit(key string) {
	if key != "" {
		st.vars[key] = true
		st.set = append(st.set, key)
	}
}

// count returns how often l occurs in this event.
func (st *state) count(l literal) int {
	if l.scope != scopeAny {
		return st.countIn(l.scope, l.id)
	}
	return st.countIn(scopeAny, l.id) + st.countIn(scopeLog, l.id) + st.countIn(scopeMessage, l.id)
}

func (st *state) countIn(sc scope, id int) int {
	if st.seen[sc][id] != st.gen {
		return 0
	}
	return int(st.counts[sc][id])
}

// occursIn reports whether any of lits occurs in the text of scope sc.
func (st *state) occursIn(sc scope, lits []literal) bool {
	for _, l := range lits {
		if st.seen[sc][l.id] == st.gen {
			return true
		}
	}
	return false
}

// release resets the hit variables prepare set.
func (st *state) release() {
	for _, k := range st.set {
		st.vars[k] = false
	}
	st.set = st.set[:0]
}

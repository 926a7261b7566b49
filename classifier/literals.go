package classifier

// literalSet finds which of a fixed set of byte strings occur in a text in one pass
// (Aho–Corasick). The rules' has() helpers compile to lookups in the hits of one scan
// per event, so the cost of literal matching does not grow with the number of rules.
type literalSet struct {
	patterns []string
	class    [256]uint8 // byte -> input class; 0 for bytes no pattern contains
	nclass   int
	delta    []int32   // state*nclass + class -> next state
	out      [][]int32 // state -> ids of the patterns that end there
}

// newLiteralSet builds the automaton for patterns; a pattern's id is its index.
// Empty patterns never match.
func newLiteralSet(patterns []string) *literalSet {
	m := &literalSet{patterns: patterns, nclass: 1}
	for _, p := range patterns {
		for i := 0; i < len(p); i++ {
			if m.class[p[i]] == 0 {
				m.class[p[i]] = uint8(m.nclass)
				m.nclass++
			}
		}
	}
	// The trie: children[state][class], 0 meaning absent (the root is never a child).
	children := [][]int32{make([]int32, m.nclass)}
	m.out = [][]int32{nil}
	for id, p := range patterns {
		if p == "" {
			continue
		}
		s := int32(0)
		for i := 0; i < len(p); i++ {
			c := m.class[p[i]]
			if children[s][c] == 0 {
				children = append(children, make([]int32, m.nclass))
				m.out = append(m.out, nil)
				children[s][c] = int32(len(children) - 1)
			}
			s = children[s][c]
		}
		m.out[s] = append(m.out[s], int32(id))
	}
	// Breadth-first: fail links, then the complete transition table.
	n := len(children)
	fail := make([]int32, n)
	m.delta = make([]int32, n*m.nclass)
	queue := make([]int32, 0, n)
	for c := 1; c < m.nclass; c++ {
		if next := children[0][c]; next != 0 {
			m.delta[c] = next
			queue = append(queue, next)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		m.out[s] = append(m.out[s], m.out[fail[s]]...)
		for c := 1; c < m.nclass; c++ {
			next := children[s][c]
			if next == 0 {
				m.delta[int(s)*m.nclass+c] = m.delta[int(fail[s])*m.nclass+c]
				continue
			}
			fail[next] = m.delta[int(fail[s])*m.nclass+c]
			m.delta[int(s)*m.nclass+c] = next
			queue = append(queue, next)
		}
	}
	return m
}

// scan sets hit[id] for every pattern that occurs in text; hit has len(patterns).
func (m *literalSet) scan(text string, hit []bool) {
	s := int32(0)
	for i := 0; i < len(text); i++ {
		s = m.delta[int(s)*m.nclass+int(m.class[text[i]])]
		for _, id := range m.out[s] {
			hit[id] = true
		}
	}
}

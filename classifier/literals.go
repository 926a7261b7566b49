package classifier

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"unicode"
	"unicode/utf8"
)

// literalSet finds which of a fixed set of byte strings occur in a text in one pass
// (Aho–Corasick). The rules' has() helpers compile to lookups in the hits of one scan
// per event, so the cost of literal matching does not grow with the number of rules.
type literalSet struct {
	patterns []string
	class    [256]int32 // byte -> input class; 0 for bytes no pattern contains
	nclass   int32
	// delta maps row + class to the next state's row (state * nclass), negated and
	// minus one (^row) when patterns end in that state.
	delta []int32
	out   [][]int32 // state -> ids of the patterns that end there
	// maxLen is the length of the longest pattern.
	maxLen int
}

// newLiteralSet builds the automaton for patterns; a pattern's id is its index.
// Empty patterns never match.
func newLiteralSet(patterns []string) *literalSet {
	m := &literalSet{patterns: patterns, nclass: 1}
	for _, p := range patterns {
		for i := 0; i < len(p); i++ {
			if m.class[p[i]] == 0 {
				m.class[p[i]] = m.nclass
				m.nclass++
			}
		}
	}
	nc := int(m.nclass)
	// The trie: children[state][class], 0 meaning absent (the root is never a child).
	children := [][]int32{make([]int32, nc)}
	ends := [][]int32{nil}
	for id, p := range patterns {
		if p == "" {
			continue
		}
		s := int32(0)
		for i := 0; i < len(p); i++ {
			c := m.class[p[i]]
			if children[s][c] == 0 {
				children = append(children, make([]int32, nc))
				ends = append(ends, nil)
				children[s][c] = int32(len(children) - 1) //nolint:gosec // states number at most the patterns' total length
			}
			s = children[s][c]
		}
		ends[s] = append(ends[s], int32(id))
		m.maxLen = max(m.maxLen, len(p))
	}
	// Breadth-first: fail links, then the complete transition table over states.
	n := len(children)
	fail := make([]int32, n)
	next := make([]int32, n*nc)
	queue := make([]int32, 0, n)
	for c := 1; c < nc; c++ {
		if child := children[0][c]; child != 0 {
			next[c] = child
			queue = append(queue, child)
		}
	}
	for i := 0; i < len(queue); i++ { // queue ends up holding every state but the root, breadth-first
		s := queue[i]
		ends[s] = append(ends[s], ends[fail[s]]...)
		for c := 1; c < nc; c++ {
			child := children[s][c]
			if child == 0 {
				next[int(s)*nc+c] = next[int(fail[s])*nc+c]
				continue
			}
			fail[child] = next[int(fail[s])*nc+c]
			next[int(s)*nc+c] = child
			queue = append(queue, child)
		}
	}
	// Renumber the states breadth-first, so that the shallow states a scan spends most
	// of its time in sit together in memory, and encode them as rows, flagging those
	// where patterns end.
	order := append([]int32{0}, queue...)
	newID := make([]int32, n)
	for i, s := range order {
		newID[s] = int32(i)
	}
	m.delta = make([]int32, n*nc)
	m.out = make([][]int32, n)
	for _, s := range order {
		for c := range nc {
			t := next[int(s)*nc+c]
			row := newID[t] * m.nclass
			if len(ends[t]) > 0 {
				m.out[newID[t]] = ends[t]
				row = ^row
			}
			m.delta[int(newID[s])*nc+c] = row
		}
	}
	return m
}

// scan appends to found the id of every pattern that occurs in text, once each, and
// counts its occurrences in count (up to 65535). seen and count have len(patterns);
// seen marks the ids found in this scan with gen, which must differ from every mark a
// previous scan left (so neither is ever cleared).
func (m *literalSet) scan(text string, seen []uint32, count []uint16, gen uint32, found []int32) []int32 {
	return m.scanExtra(text, seen, count, gen, found, int32(len(m.patterns)), nil) //nolint:gosec // patterns number at most the rules' literals
}

// scanExtra is scan over an automaton whose patterns from first on are not rules'
// literals: for each occurrence of one of those, extra gets its id and end offset
// instead, in the order they end. seen and count need only first entries.
//
// A scan is a chain of dependent table look-ups, each waiting for the one before, so
// a long text is scanned as two halves at once: the second half's scan starts from
// the root maxLen-1 bytes before the half, where no occurrence that ends in the half
// can have begun, and what it finds waits in pending until the first half is done.
// Both chains of look-ups then run side by side, and the scan takes about two thirds
// of the time of one chain through the whole text. pending holds at most maxPending
// occurrences: a text that ends more patterns in its second half is finished as one
// scan from where the first chain is, so that the memory a scan takes does not grow
// with the occurrences in the text (patterns that are suffixes of one another can
// end hundreds at every byte).
func (m *literalSet) scanExtra(text string, seen []uint32, count []uint16, gen uint32, found []int32,
	first int32, extra func(id int32, end int)) []int32 {
	sink := scanSink{m: m, seen: seen, count: count, gen: gen, found: found, first: first, extra: extra}
	mid := len(text) / 2
	start := mid - (m.maxLen - 1) // where the second half's scan starts
	if len(text) < minSplitScan || m.maxLen == 0 || start <= 0 {
		sink.run(text, 0, len(text), 0)
		return sink.found
	}
	var buf [64]uint64
	pending := buf[:0] // the second half's occurrences: end offset << 32 | id
	a, b := int32(0), int32(0)
	for i := range mid {
		a = m.delta[a+m.class[text[i]]]
		b = m.delta[b+m.class[text[start+i]]]
		if a < 0 {
			a = ^a
			sink.emit(a, i+1)
		}
		if b < 0 {
			b = ^b
			if end := start + i + 1; end > mid {
				ids := m.out[b/m.nclass]
				if len(pending)+len(ids) > maxPending {
					// Too many to hold: a is where one scan would be after text[i], and
					// what pending holds ends after mid, so one scan from here finds it.
					sink.run(text, i+1, len(text), a)
					return sink.found
				}
				for _, id := range ids {
					pending = append(pending, uint64(end)<<32|uint64(id)) //nolint:gosec // ids and offsets are not negative
				}
			}
		}
	}
	for _, p := range pending {
		sink.one(int32(p&(1<<32-1)), int(p>>32)) //nolint:gosec // as packed above
	}
	sink.run(text, start+mid, len(text), b)
	return sink.found
}

// minSplitScan is the length from which scanExtra scans a text as two halves at once.
const minSplitScan = 1024

// maxPending bounds the second half's occurrences a split scan holds (8 bytes each).
const maxPending = 4096

// scanSink is where a scan's occurrences go.
type scanSink struct {
	m     *literalSet
	seen  []uint32
	count []uint16
	gen   uint32
	found []int32
	first int32
	extra func(id int32, end int)
}

// run scans text[from:to] from row and hands on what it finds.
func (s *scanSink) run(text string, from, to int, row int32) {
	m := s.m
	for i := from; i < to; i++ {
		row = m.delta[row+m.class[text[i]]]
		if row < 0 {
			row = ^row
			s.emit(row, i+1)
		}
	}
}

// emit hands on the patterns that end at end in the state of row.
func (s *scanSink) emit(row int32, end int) {
	for _, id := range s.m.out[row/s.m.nclass] {
		s.one(id, end)
	}
}

// one hands on one occurrence: the extra function's if it is not a rule's literal,
// else the marks and counts.
func (s *scanSink) one(id int32, end int) {
	if id >= s.first {
		s.extra(id, end)
		return
	}
	if s.seen[id] != s.gen {
		s.seen[id] = s.gen
		s.count[id] = 0
		s.found = append(s.found, id)
	}
	if s.count[id] < 1<<16-1 {
		s.count[id]++
	}
}

// each calls fn with the id and end offset of every occurrence of a pattern in text,
// in the order they end.
func (m *literalSet) each(text string, fn func(id int32, end int)) {
	m.scanExtra(text, nil, nil, 0, nil, 0, fn)
}

// maxAutomatonCells bounds the table of a literal set built from untrusted patterns
// (rule files, knowledge tables): states x byte classes. The table is dense, so
// patterns of many distinct bytes sharing no prefix cost far more than their size;
// 4M cells are 16 MiB a table.
const maxAutomatonCells = 1 << 22

// automatonCells is an upper bound on the cells of the automaton of patterns: their
// bytes (each can add a state) times the distinct bytes among them.
func automatonCells(patterns []string) int {
	var seen [256]bool
	total, distinct := 0, 0
	for _, p := range patterns {
		total += len(p)
		for i := 0; i < len(p); i++ {
			if !seen[p[i]] {
				seen[p[i]] = true
				distinct++
			}
		}
	}
	return (total + 1) * (distinct + 1)
}

// checkAutomaton refuses patterns whose automaton could exceed maxAutomatonCells.
func checkAutomaton(what string, patterns []string) error {
	if n := automatonCells(patterns); n > maxAutomatonCells {
		return fmt.Errorf("%s: %d patterns whose automaton may take %d cells, over the limit of %d: use fewer, shorter or more alike strings",
			what, len(patterns), n, maxAutomatonCells)
	}
	return nil
}

// readLimited reads the file name of fsys, refusing anything that is not a regular
// file or is over max bytes without reading more than max+1 of it.
func readLimited(fsys fs.FS, name string, max int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("over the %d-byte limit", max)
	}
	return data, nil
}

// toLower is strings.ToLower, byte for byte, but quicker on what logs are: ASCII with
// a few other runes (box drawing, progress bars, accents, CJK). It lowers ASCII eight
// bytes at a time and decodes only the other runes, where strings.ToLower goes a byte
// at a time and maps any string with one such rune through a function value. An
// invalid byte becomes U+FFFD, as strings.Map makes it.
func toLower(s string) string {
	// A string already lowered is returned as it is, as strings.ToLower does.
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	var chunk [512]byte // lowered bytes not yet written to b
	n := 0
	flush := func() {
		b.Write(chunk[:n])
		n = 0
	}
	for i < len(s) {
		if i+8 <= len(s) {
			w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			if w&highBits == 0 {
				if n+8 > len(chunk) {
					flush()
				}
				binary.LittleEndian.PutUint64(chunk[n:], w|upperBits(w)>>2)
				n += 8
				i += 8
				continue
			}
		}
		if c := s[i]; c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if n == len(chunk) {
				flush()
			}
			chunk[n] = c
			n++
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if n+utf8.UTFMax > len(chunk) {
			flush()
		}
		n += utf8.EncodeRune(chunk[n:], unicode.ToLower(r))
		i += w
	}
	flush()
	return b.String()
}

// highBits has the top bit of each byte of a word set.
const highBits = 0x8080808080808080

// upperBits returns, for a word of eight ASCII bytes, the top bit of each byte that
// is an upper-case letter: a byte is one when adding 0x80-'A' sets its top bit and
// adding 0x80-'Z'-1 does not. No sum carries into the next byte, as ASCII bytes are
// under 0x80.
func upperBits(w uint64) uint64 {
	const ones = 0x0101010101010101
	return (w + (0x80-'A')*ones) &^ (w + (0x80-'Z'-1)*ones) & highBits
}

package classifier

// Review 39: tests of literalSet.scanExtra's split scan (92c9f52) against one
// sequential scan, seqScanExtra, kept here as the reference.

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/autofix/autofix/failure"
)

// seqScanExtra is scanExtra as it was before 92c9f52: one chain through the text.
func seqScanExtra(m *literalSet, text string, seen []uint32, count []uint16, gen uint32, found []int32,
	first int32, extra func(id int32, end int)) []int32 {
	row := int32(0)
	for i := 0; i < len(text); i++ {
		row = m.delta[row+m.class[text[i]]]
		if row < 0 {
			row = ^row
			for _, id := range m.out[row/m.nclass] {
				if id >= first {
					extra(id, i+1)
					continue
				}
				if seen[id] != gen {
					seen[id] = gen
					count[id] = 0
					found = append(found, id)
				}
				if count[id] < 1<<16-1 {
					count[id]++
				}
			}
		}
	}
	return found
}

type r39occ struct {
	id  int32
	end int
}

// compareScans runs the split scan and the sequential one with the same seen/count
// history and first, and reports the first difference.
func compareScans(t *testing.T, m *literalSet, text string, first int32, what string) {
	t.Helper()
	n := len(m.patterns)
	var got, want []r39occ
	// Stale marks from an earlier generation, as in state.prepare.
	seenA, countA := make([]uint32, n), make([]uint16, n)
	seenB, countB := make([]uint32, n), make([]uint16, n)
	for i := range n {
		seenA[i], seenB[i] = uint32(i%3), uint32(i%3)
		countA[i], countB[i] = uint16(i), uint16(i)
	}
	gen := uint32(2)
	foundA := m.scanExtra(text, seenA, countA, gen, nil, first, func(id int32, end int) { got = append(got, r39occ{id, end}) })
	foundB := seqScanExtra(m, text, seenB, countB, gen, nil, first, func(id int32, end int) { want = append(want, r39occ{id, end}) })
	if !slices.Equal(got, want) {
		t.Fatalf("%s: text of %d bytes, maxLen %d: extra calls differ (%d vs %d), first difference at %d",
			what, len(text), m.maxLen, len(got), len(want), firstDifference(got, want))
	}
	if !slices.Equal(foundA, foundB) || !slices.Equal(seenA, seenB) || !slices.Equal(countA, countB) {
		t.Fatalf("%s: text of %d bytes, maxLen %d: found/seen/count differ", what, len(text), m.maxLen)
	}
}

// TestReview39SplitScanMatchesSequential: random pattern sets (with a long pattern
// whose length puts the second chain's start at 1, 2, 3 … bytes, patterns of
// multi-byte runes, empty patterns, duplicates), texts from 1020 to a few KiB,
// occurrences at and around the midpoint, many occurrences (pending far over 64).
func TestReview39SplitScanMatchesSequential(t *testing.T) {
	rng := rand.New(rand.NewPCG(39, 39))
	alpha := []string{"a", "b", "c", " ", "\n", "é", "日", "\xff", "A"}
	word := func(n int) string {
		var b strings.Builder
		for b.Len() < n {
			b.WriteString(alpha[rng.IntN(len(alpha))])
		}
		return b.String()[:n]
	}
	for iter := range 3000 {
		n := 1020 + rng.IntN(40)
		if iter%5 == 0 {
			n = 1024 + rng.IntN(4000)
		}
		text := word(n)
		if iter%7 == 0 {
			text = strings.Repeat("a", n)
		}
		var patterns []string
		for range 1 + rng.IntN(40) {
			patterns = append(patterns, word(1+rng.IntN(5)))
		}
		// A long pattern: maxLen from just under mid+1 down, so start = 1, 2, ….
		mid := n / 2
		switch iter % 4 {
		case 0:
			L := mid - rng.IntN(5) // start = mid-(L-1) in 1..5
			if L > 0 {
				p := text[rng.IntN(n-L+1):][:L] // occurs in the text
				patterns = append(patterns, p)
			}
		case 1:
			L := 1 + rng.IntN(mid)
			off := mid - rng.IntN(L+1) // straddles or ends at the midpoint
			if off >= 0 && off+L <= n {
				patterns = append(patterns, text[off:off+L])
			}
		case 2:
			patterns = append(patterns, "", "a", "aa", "aaa", "a") // empties, duplicates, suffix chains
		}
		rng.Shuffle(len(patterns), func(i, j int) { patterns[i], patterns[j] = patterns[j], patterns[i] })
		m := newLiteralSet(patterns)
		if m.maxLen == 0 {
			continue // see TestReview39SplitScanEmptySet
		}
		first := int32(rng.IntN(len(patterns) + 1))
		compareScans(t, m, text, first, "random")
	}
}

// TestReview39SplitScanEmptySet: a literal set with no (non-empty) pattern has maxLen
// 0, so start = mid+1 and the second chain reads text[mid+1+i] for i < mid: for a text
// of even length >= 1024 that is text[len(text)], out of range. The sequential scan
// (before 92c9f52) handed on nothing.
func TestReview39SplitScanEmptySet(t *testing.T) {
	for _, patterns := range [][]string{nil, {""}, {"", ""}} {
		m := newLiteralSet(patterns)
		for _, n := range []int{1024, 1025, 2048, 4096} {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("newLiteralSet(%q).each(text of %d bytes) panicked: %v", patterns, n, r)
					}
				}()
				m.each(strings.Repeat("x", n), func(int32, int) {})
				m.scan(strings.Repeat("x", n), make([]uint32, len(patterns)), make([]uint16, len(patterns)), 1, nil)
			}()
		}
	}
}

// TestReview39RulesWithoutLiteralsLongReason: the same through the classifier: a rule
// set none of whose rules uses has()/grep() literals (here one exit-code rule, as an
// operator's --rules directory or a POST /v1/rules:diff candidate may be) scans the
// reason with rs.literals alone, whose maxLen is 0; an event whose reason is 1024
// bytes (MaxValueLength allows 4096) panics in state.prepare.
func TestReview39RulesWithoutLiteralsLongReason(t *testing.T) {
	rs, err := Load(fstest.MapFS{"r.yaml": {Data: []byte(`rules:
  - id: oom-exit
    description: exit code 137
    expr: exitCode == 137
    category: oom_memory
    retryable: true
    action: increase_memory
    confidence: 0.9
    priority: 50
`)}})
	if err != nil {
		t.Fatal(err)
	}
	c := New(rs, Options{})
	ev := &failure.Event{ID: "e1", Job: failure.Job{Name: "j", Kind: "batch"},
		Failure: failure.Signals{Reason: strings.Repeat("X", 1024), ExitCode: 137}}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Classify panicked: %v", r)
		}
	}()
	if got := c.Classify(ev); got.Category != failure.OOMMemory {
		t.Errorf("category %s, want oom_memory", got.Category)
	}
}

// TestReview39KnowledgeWithoutPhrasesFind: Knowledge.Find on tables that key entries
// by reason or exit code only (no phrases) panics on a message of 1024 bytes.
func TestReview39KnowledgeWithoutPhrasesFind(t *testing.T) {
	k := &Knowledge{phrases: newLiteralSet(nil), reasons: map[string][]int32{}, exits: map[int][]int32{}}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Find panicked: %v", r)
		}
	}()
	k.Find(&failure.Event{Failure: failure.Signals{Message: strings.Repeat("m", 2048)}})
}

// TestReview39SplitScanManyOccurrences: texts whose second half ends far more
// occurrences than the 64-entry stack buffer (and than any bound on pending) still
// give exactly the sequential scan's results.
func TestReview39SplitScanManyOccurrences(t *testing.T) {
	var patterns []string
	for n := 1; n <= 300; n++ {
		patterns = append(patterns, strings.Repeat("a", n))
	}
	patterns = append(patterns, "ab", "ba", "b")
	m := newLiteralSet(patterns)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{1024, 1025, 1500, 2048, 5000, 20000} {
		text := strings.Repeat("a", n)
		compareScans(t, m, text, int32(len(patterns)/2), "all a")
		b := []byte(text)
		for range n / 50 {
			b[rng.IntN(n)] = 'b'
		}
		compareScans(t, m, string(b), int32(rng.IntN(len(patterns))), "a with b")
	}
}

// TestReview39ShippedAutomatonRandomTexts: the shipped rules' merged automaton (rules'
// literals, knowledge phrases, error words) on long texts built from its own patterns,
// random bytes (invalid UTF-8, NUL, \r) and upper case, at sizes around the split.
func TestReview39ShippedAutomatonRandomTexts(t *testing.T) {
	c, err := LoadDefault(Sources{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, first := c.scan.all, c.scan.first
	rng := rand.New(rand.NewPCG(39, 2))
	for iter := range 400 {
		n := []int{1023, 1024, 1025, 1026, 2047, 2048, 4096, 65536}[iter%8]
		if iter%3 == 0 {
			n = 1024 + rng.IntN(64<<10)
		}
		var b strings.Builder
		for b.Len() < n {
			switch rng.IntN(4) {
			case 0, 1:
				b.WriteString(m.patterns[rng.IntN(len(m.patterns))])
			case 2:
				b.WriteByte(byte(rng.IntN(256)))
			default:
				b.WriteString([]string{"\n", "\r\n", " ", "é", "日本", "\x00"}[rng.IntN(6)])
			}
		}
		text := b.String()[:n]
		if iter%5 == 0 { // a long pattern across the midpoint
			p := m.patterns[rng.IntN(len(m.patterns))]
			if off := n/2 - rng.IntN(len(p)+1); off >= 0 && off+len(p) <= n {
				text = text[:off] + p + text[off+len(p):]
			}
		}
		compareScans(t, m, text, first, "shipped")
		compareScans(t, m, toLower(text), first, "shipped lowered")
	}
}

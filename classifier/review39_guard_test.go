package classifier

// Review 39: soundness of the guard clauses holdsClauses now checks on every candidate
// line (92c9f52): every line the lowered regex matches must hold a literal of each
// clause.

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

func r39RandRegex(rng *rand.Rand, depth int) string {
	atoms := []string{"abc", "xyz", "ab", "err", "Error", "é", "日本", "K", "ß", "İ", "ſ", "σ", "Σ", "ς",
		"[a-c]", "[abc]", "[^a]", ".", `\d`, `\s`, `\b`, "^", "$", `\w`, "[éÉ]", "[kK]", "[σς]", "50[0-3]",
		`\.`, "-", ":", " ", "(?-i:ABC)", "(?-i:abc)", `\x{212A}`, `\Qa.b\E`, "[[:upper:]]", `\pL`}
	if depth > 3 {
		return atoms[rng.IntN(len(atoms))]
	}
	switch rng.IntN(8) {
	case 0, 1:
		return atoms[rng.IntN(len(atoms))]
	case 2, 3:
		var b strings.Builder
		for range 2 + rng.IntN(3) {
			b.WriteString(r39RandRegex(rng, depth+1))
		}
		return b.String()
	case 4:
		return "(" + r39RandRegex(rng, depth+1) + "|" + r39RandRegex(rng, depth+1) + ")"
	case 5:
		q := []string{"*", "+", "?", "{1,3}", "{0,2}", "{2}", "+?", "{1,}"}
		return "(?:" + r39RandRegex(rng, depth+1) + ")" + q[rng.IntN(len(q))]
	case 6:
		return "(?i:" + r39RandRegex(rng, depth+1) + ")"
	default:
		return "(?-i:" + r39RandRegex(rng, depth+1) + ")"
	}
}

func TestReview39GuardClausesSound(t *testing.T) {
	rng := rand.New(rand.NewPCG(39, 1))
	pieces := []string{"a", "b", "c", "x", "y", "z", "abc", "xyz", "err", "error", "ERROR", "é", "É", "日本", "k", "K",
		"\u212a", "ß", "ẞ", "ss", "İ", "i", "ſ", "s", "σ", "Σ", "ς", " ", "\t", "\r", "0", "5", "500", "503", ".", "-", ":",
		"a.b", "ABC", "\xff", "ǅ", "ǆ"}
	matched, checked := 0, 0
	for range 6000 {
		p := r39RandRegex(rng, 0)
		lowered, guard, err := rewriteRegex(p)
		if err != nil || len(guard) == 0 {
			continue
		}
		re, err := regexp.Compile(lowered)
		if err != nil {
			continue
		}
		var lits []string
		for _, c := range guard {
			lits = append(lits, c...)
		}
		for range 60 {
			var b strings.Builder
			for range rng.IntN(10) {
				if rng.IntN(3) == 0 {
					b.WriteString(lits[rng.IntN(len(lits))])
				} else {
					b.WriteString(pieces[rng.IntN(len(pieces))])
				}
			}
			line := toLower(b.String())
			if strings.Contains(line, "\n") {
				continue
			}
			checked++
			if !re.MatchString(line) {
				continue
			}
			matched++
			for _, c := range guard {
				held := false
				for _, lit := range c {
					held = held || strings.Contains(line, lit)
				}
				if !held {
					t.Fatalf("pattern %q (lowered %q) matches line %q, which holds no literal of guard clause %q",
						p, lowered, line, c)
				}
			}
		}
	}
	t.Logf("%d lines checked, %d matched", checked, matched)
}

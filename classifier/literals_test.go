package classifier

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestLiteralSetMatchesStringsContains(t *testing.T) {
	patterns := []string{"he", "she", "his", "hers", "cuda out of memory", "out", "", "é", "a", "aaa", "no space left"}
	texts := []string{
		"", "ushers", "h", "runtimeerror: cuda out of memory. tried", "café", "aa", "aaaa",
		"oserror: [errno 28] no space left on device", "x\nhis\nher",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteByte("ahers u"[rng.IntN(7)])
		}
		texts = append(texts, b.String())
	}
	m := newLiteralSet(patterns)
	for _, text := range texts {
		hit := make([]bool, len(patterns))
		m.scan(text, hit)
		for id, p := range patterns {
			want := p != "" && strings.Contains(text, p)
			if hit[id] != want {
				t.Errorf("scan(%q) hit %q = %v, want %v", text, p, hit[id], want)
			}
		}
	}
}

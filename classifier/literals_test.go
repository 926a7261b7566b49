package classifier

import (
	"fmt"
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
	seen := make([]uint32, len(patterns))
	count := make([]uint16, len(patterns))
	for i, text := range texts {
		hit := make([]bool, len(patterns))
		found := m.scan(text, seen, count, uint32(i+1), nil)
		for _, id := range found {
			if hit[id] {
				t.Errorf("scan(%q) found %q twice", text, patterns[id])
			}
			hit[id] = true
		}
		for id, p := range patterns {
			if hit[id] && int(count[id]) != countOverlapping(text, p) {
				t.Errorf("scan(%q) counted %q %d times, want %d", text, p, count[id], countOverlapping(text, p))
			}
			want := p != "" && strings.Contains(text, p)
			if hit[id] != want {
				t.Errorf("scan(%q) hit %q = %v, want %v", text, p, hit[id], want)
			}
		}
	}
}

func countOverlapping(text, p string) int {
	n := 0
	for i := range len(text) {
		if strings.HasPrefix(text[i:], p) {
			n++
		}
	}
	return n
}

// TestLiteralSetManyPatterns checks the automaton against strings.Contains with enough
// random patterns that the states span many breadth-first levels.
func TestLiteralSetManyPatterns(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcde .:"[rng.IntN(8)]
		}
		return string(b)
	}
	var patterns []string
	for range 600 {
		patterns = append(patterns, word(1+rng.IntN(12)))
	}
	m := newLiteralSet(patterns)
	seen := make([]uint32, len(patterns))
	count := make([]uint16, len(patterns))
	for i := range 200 {
		text := word(rng.IntN(400))
		hit := make([]bool, len(patterns))
		for _, id := range m.scan(text, seen, count, uint32(i+1), nil) {
			hit[id] = true
		}
		for id, p := range patterns {
			if want := strings.Contains(text, p); hit[id] != want {
				t.Fatalf("scan(%q) hit %q = %v, want %v", text, p, hit[id], want)
			}
			if hit[id] && int(count[id]) != countOverlapping(text, p) {
				t.Fatalf("scan(%q) counted %q %d times, want %d", text, p, count[id], countOverlapping(text, p))
			}
		}
	}
}

// firstDifference is the index of the first element where a and b differ, or the
// shorter length.
func firstDifference[T comparable](a, b []T) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// FuzzToLower: toLower is strings.ToLower, byte for byte (the rules' offsets, the
// features and the evidence lines depend on it).
func FuzzToLower(f *testing.F) {
	for _, seed := range []string{"", "ABC", "Ünïcödé ÉRROR", "\xff\xfeA", "İSTANBUL", "ΣΑΣ", "progress ████ 50%", "\u212a\u2126", "a\uFFFDb", "\xed\xa0\x80",
		"@AZ[`az{@AZ[`az{", "RuntimeError: CUDA OUT OF MEMORY. Tried", "0123456789ABCDEFGHIJ\u00c9KLMNOPQRSTUVWXYZ",
		strings.Repeat("Epoch 3 STEP 12/40 ", 26) + "\xff\u023a\u0130" + strings.Repeat("LOSS=NaN ", 120)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := toLower(s), strings.ToLower(s); got != want {
			t.Fatalf("toLower(%q) = %q, strings.ToLower %q", s, got, want)
		}
	})
}

// TestToLowerAcrossChunks puts runes that change length when lowered (an invalid byte
// becomes three, U+023A grows by one, U+0130 shrinks) at every offset around the
// chunk toLower flushes at, after ASCII that is lowered a word at a time.
func TestToLowerAcrossChunks(t *testing.T) {
	for _, runes := range []string{"\xff", "\u023a\u023a", "\u0130", "\xe2\x82", "\u2c6f@[`{"} {
		for off := 0; off < 1100; off++ {
			s := strings.Repeat("AbZ@[`{z", off/8+1)[:off] + runes + strings.Repeat("QRS", 200)
			if got, want := toLower(s), strings.ToLower(s); got != want {
				t.Fatalf("toLower differs from strings.ToLower with %q at offset %d", runes, off)
			}
		}
	}
}

// BenchmarkToLower lowers a 4 KiB log of ASCII and one with a progress bar's runes.
func BenchmarkToLower(b *testing.B) {
	line := "2026-11-25 10:01:02,123 INFO Trainer.py:210 - Epoch 3 Step 1200/12000 Loss=0.4312\n"
	for _, tc := range []struct{ name, log string }{
		{"ascii", strings.Repeat(line, 4096/len(line))},
		{"runes", strings.Repeat(line+"Loading: 45%|████▌     | 9/20 [00:02<00:03]\n", 4096/(len(line)+48))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.log)))
			b.ReportAllocs()
			for b.Loop() {
				_ = toLower(tc.log)
			}
		})
	}
}

// BenchmarkScanDefaultVocabulary is the one scan of an event's lowered log by the
// default rules' and tables' automaton: a 4 KiB log of training progress lines ending
// in a failure.
func BenchmarkScanDefaultVocabulary(b *testing.B) {
	c, err := LoadDefault(Sources{}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	var log strings.Builder
	for step := 0; log.Len() < 4096; step++ {
		fmt.Fprintf(&log, "2026-11-25 10:%02d:%02d,%03d info trainer.py:%d - epoch %d step %d/12000 loss=%.4f lr=3.00e-04 tokens/s=%d\n",
			step/60%60, step%60, step*11%1000, 200+step%50, step/100, step, 2.0/float64(step+1), 41000+step*3)
	}
	log.WriteString("torch.outofmemoryerror: cuda out of memory. tried to allocate 2.00 gib. gpu 0 has a total capacity of 79.15 gib\n")
	text := log.String()
	sc := c.scan
	n := int(sc.first)
	seen, count := make([]uint32, n), make([]uint16, n)
	b.SetBytes(int64(len(text)))
	var found []int32
	gen := uint32(0)
	for b.Loop() {
		gen++
		found = sc.all.scanExtra(text, seen, count, gen, found[:0], sc.first, func(int32, int) {})
	}
}

package classifier

// Review 39: the split scan buffers every occurrence of the second half in pending
// (8 bytes each, grown by append); the sequential scan allocated nothing. With
// patterns that are suffixes of one another (an untrusted rules:diff candidate or
// knowledge table may hold "a", "aa", … ), every byte of a hostile log ends hundreds
// of them.

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/autofix/autofix/failure"
)

func r39Alloc(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestReview39SplitScanPendingMemory: a scan of one text should not allocate in
// proportion to its occurrences (the sequential scan allocated nothing).
func TestReview39SplitScanPendingMemory(t *testing.T) {
	var patterns []string
	for n := 1; n <= 256; n++ {
		patterns = append(patterns, strings.Repeat("a", n))
	}
	m := newLiteralSet(patterns)
	text := strings.Repeat("a", failure.MaxLogTail)
	seen, count := make([]uint32, len(patterns)), make([]uint16, len(patterns))
	got := r39Alloc(func() { m.scan(text, seen, count, 1, nil) })
	// found is 256 ids; a bounded buffer of pending occurrences is fine.
	if got > 256<<10 {
		t.Errorf("scanning a %d-byte log against %d literals allocated %d MiB", len(text), len(patterns), got>>20)
	}
}

// TestReview39CandidateRulesPendingMemory: the same through Classify, with a rule
// set an untrusted POST /v1/rules:diff candidate can send (8 rules of has() over
// runs of 'a' up to 256 bytes; the literals' automaton is far under its cell limit).
func TestReview39CandidateRulesPendingMemory(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	n := 1
	for r := 0; n <= 256; r++ {
		var args []string
		size := 0
		for ; n <= 256 && size+n < 7000; n++ {
			args = append(args, fmt.Sprintf("%q", strings.Repeat("a", n)))
			size += n + 4
		}
		fmt.Fprintf(&b, "  - id: r%d\n    description: runs of a\n    expr: 'logHas(%s)'\n    category: network_transient\n    retryable: true\n    action: retry_backoff\n    confidence: 0.8\n    priority: 50\n", r, strings.Join(args, ", "))
	}
	rs, err := Load(fstest.MapFS{"r.yaml": {Data: []byte(b.String())}})
	if err != nil {
		t.Fatal(err)
	}
	c := New(rs, Options{})
	ev := &failure.Event{ID: "e", Job: failure.Job{Name: "j", Kind: "batch"},
		Failure: failure.Signals{Reason: "Error", ExitCode: 1, LogTail: strings.Repeat("a", failure.MaxLogTail)}}
	c.Classify(ev) // warm the pool
	got := r39Alloc(func() { c.Classify(ev) })
	t.Logf("Classify allocated %d KiB", got>>10)
	if got > 4<<20 {
		t.Errorf("classifying one event with a %d-byte log allocated %d MiB", len(ev.Failure.LogTail), got>>20)
	}
}

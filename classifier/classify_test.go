package classifier

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/autofix/autofix/failure"
)

func event(reason string, exitCode int, message, log string) *failure.Event {
	return &failure.Event{
		ID:      "e1",
		Job:     failure.Job{Name: "j", Attempt: 1},
		Failure: failure.Signals{Reason: reason, ExitCode: exitCode, Message: message, LogTail: log},
	}
}

func TestHelpers(t *testing.T) {
	tests := []struct {
		expr string
		ev   *failure.Event
		want bool
	}{
		{`has("CUDA Out Of Memory")`, event("Error", 1, "", "RuntimeError: cuda out of memory."), true},
		{`has("oomkilled")`, event("OOMKilled", 137, "", ""), true}, // has() sees the reason
		{`has("a", "b")`, event("", 1, "", "only b here"), true},
		{`has("a", "c")`, event("", 1, "", "only b here"), false},
		{`logHas("quota")`, event("", 0, "exceeded quota", ""), false},
		{`msgHas("quota")`, event("", 0, "exceeded quota", ""), true},
		{`msgHas("quota")`, event("", 0, "", "exceeded quota"), false},
		{"grep(`xid[: ]+\\d+`)", event("", 1, "", "NVRM: XID 79, GPU has fallen off the bus"), true},
		{"grep(`^killed$`)", event("", 137, "", "step 4\nKilled\n"), true}, // ^ and $ match at lines
		{"grep(`^killed$`)", event("", 137, "", "step 4: not Killed here"), false},
		{"logGrep(`[A-Z]+ error`)", event("", 1, "", "ECC error"), true}, // classes fold too
		{"msgGrep(`pod deleted`)", event("", 0, "", "pod deleted"), false},
		// logHasAfter: a phrase counts only after the last of the markers.
		{`logHasAfter(["Read Timed Out"], ["traceback (most recent call last)"])`,
			event("", 1, "", "Traceback (most recent call last):\nKeyError\nread timed out"), true},
		{`logHasAfter(["read timed out"], ["traceback (most recent call last)"])`,
			event("", 1, "", "read timed out, retrying\nTraceback (most recent call last):\nKeyError: 'x'"), false},
		{`logHasAfter(["read timed out"], ["traceback", "> task :"])`, // the last of every marker
			event("", 1, "", "Traceback\nread timed out\n> Task :app:test"), false},
		{`logHasAfter(["read timed out"], ["traceback"])`, // a marker that does not occur places nothing
			event("", 1, "", "read timed out"), true},
		{`logHasAfter(["a timeout", "read timed out"], ["traceback"])`, // any phrase's last occurrence
			event("", 1, "", "read timed out\ntraceback\nread timed out"), true},
		{`logHasAfter(["read timed out"], ["traceback"])`, event("", 1, "read timed out", ""), false}, // the log tail only
		{`logHasAfter(["read timed out"], ["traceback"])`, event("", 1, "", "no such phrase"), false},
		{`signal == 9`, event("Error", 137, "", ""), true},
		{`signal == 0`, event("Error", 1, "", ""), true},
		{`exceptionName == "ModuleNotFoundError"`, event("Error", 1, "", "Traceback:\nModuleNotFoundError: No module named 'x'"), true},
		{`len(lines) == 2 and lines[1] == "b"`, event("", 1, "", "a\nb\n"), true},
		{`resources.memory == 2 * Gi`, &failure.Event{Job: failure.Job{Resources: failure.Resources{MemoryBytes: 2 << 30}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("r", tt.expr, "timeout", 1, 0.9)})
			got := New(rs, Options{}).Classify(tt.ev)
			if matched := got.Category == failure.Timeout; matched != tt.want {
				t.Errorf("rule %s on %+v matched = %v, want %v", tt.expr, tt.ev.Failure, matched, tt.want)
			}
		})
	}
}

// TestAfterCallsDoNotShareGuards: two logHasAfter() calls whose lists differ get
// separate guards, even when a literal holds a byte a joined key could confuse with a
// separator (rule files are untrusted: a candidate that adds a file must not change
// another rule's guard).
func TestAfterCallsDoNotShareGuards(t *testing.T) {
	rs := mustLoad(t, map[string]string{
		"0-extra.yaml": "rules:\n" + rule("joined", `logHasAfter(["x"], ["m1\x00m2"]) and exitCode == 3`, "disk_full", 10, 0.9),
		"1-real.yaml":  "rules:\n" + rule("two-markers", `logHasAfter(["x"], ["m1", "m2"])`, "timeout", 5, 0.9),
	})
	c := New(rs, Options{})
	if got := c.Classify(event("", 1, "", "x\nm2\n")); got.Category == failure.Timeout {
		t.Errorf("x then m2: %s (rules %v); two-markers must not match, m2 comes after x", got.Category, got.Rules)
	}
	if got := c.Classify(event("", 1, "", "m2\nx\n")); got.Category != failure.Timeout {
		t.Errorf("m2 then x: %s (rules %v); want two-markers to match", got.Category, got.Rules)
	}
	if got := c.Classify(event("", 3, "", "m2\nx\nm1\n")); got.Category != failure.DiskFull {
		t.Errorf("m2, x, m1 with exit 3: %s (rules %v); want joined to match (its one marker never occurs)", got.Category, got.Rules)
	}
}

func TestLowerRegexMatchesCaseInsensitively(t *testing.T) {
	patterns := []string{`cuda out of memory`, `\bxid\b`, `[A-Z]+ error`, `Killed$`, `exit(ed)? code \d+`, `(?:foo|BAR)baz`, `é+`,
		`\w+Error:`, `a[rz]b(oo|x)?`, `(ab|ba) [xz]`, `^k(i|é)`}
	alphabet := []string{"a", "A", "b", "B", "r", "R", "z", "Z", "f", "O", "o", "x", "X", "i", "d", "é", "É", " ", "\n", "K", "k", "e", "E", ":", "1",
		"ab", "ba", "arb", "foo", "baz"}
	rng := rand.New(rand.NewPCG(7, 9))
	for _, p := range patterns {
		lowered, guard, err := lowerRegex(p)
		if err != nil {
			t.Fatalf("lowerRegex(%q): %v", p, err)
		}
		want := regexp.MustCompile(`(?im)` + p)
		got := regexp.MustCompile(lowered)
		for range 2000 {
			var b strings.Builder
			for range rng.IntN(30) {
				b.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			text := b.String()
			if want.MatchString(text) != got.MatchString(strings.ToLower(text)) {
				t.Fatalf("pattern %q (lowered %q) disagrees on %q", p, lowered, text)
			}
			for _, clause := range guard {
				if want.MatchString(text) && !slices.ContainsFunc(clause, func(lit string) bool { return strings.Contains(strings.ToLower(text), lit) }) {
					t.Fatalf("pattern %q matched %q, which contains none of its guard %q", p, text, clause)
				}
			}
		}
	}
}

// TestLowerRegexMemoIsBoundedAndFaithful: a memoised rewrite is the rewrite, and a
// stream of distinct patterns (rule files are untrusted) never grows the memo past its
// bound.
func TestLowerRegexMemoIsBoundedAndFaithful(t *testing.T) {
	for _, p := range []string{`waiting for [^\n]{0,80}(failed|timed out)`, `\b(429|50[0234])\b`, `Label class \d+ exceeds nc=\d+`} {
		for range 2 {
			lowered, guard, err := lowerRegex(p)
			if err != nil {
				t.Fatal(err)
			}
			wantLowered, wantGuard, err := rewriteRegex(p)
			if err != nil {
				t.Fatal(err)
			}
			if lowered != wantLowered || !reflect.DeepEqual(guard, wantGuard) {
				t.Fatalf("lowerRegex(%q) = %q %q, its rewrite %q %q", p, lowered, guard, wantLowered, wantGuard)
			}
		}
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range maxLoweredCache {
				if _, _, err := lowerRegex(fmt.Sprintf("worker %d pattern %d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	loweredCache.Lock()
	n := len(loweredCache.m)
	loweredCache.Unlock()
	if n == 0 || n > maxLoweredCache {
		t.Fatalf("the memo holds %d patterns, want 1 to %d", n, maxLoweredCache)
	}
	// A short pattern whose rewrite is long (every control range, printed) is not
	// held, and many that are only just small enough stay within the byte budget.
	huge := strings.Repeat(`\pC`, 300) + "x"
	if lowered, _, err := lowerRegex(huge); err != nil || len(lowered) <= maxLoweredEntryBytes {
		t.Fatalf("lowerRegex of %d bytes of \\pC: %d bytes, %v; want a rewrite over %d", len(huge), len(lowered), err, maxLoweredEntryBytes)
	}
	for i := range 600 {
		if _, _, err := lowerRegex(fmt.Sprintf("%d %s", i, strings.Repeat(`\pZ`, 160))); err != nil {
			t.Fatal(err)
		}
	}
	loweredCache.Lock()
	_, held := loweredCache.m[huge]
	total := 0
	for p, e := range loweredCache.m {
		total += len(p) + len(e.lowered)
	}
	accounted := loweredCache.bytes
	loweredCache.Unlock()
	if held || total > maxLoweredCacheBytes || total > accounted {
		t.Fatalf("the memo holds the huge rewrite: %v; %d bytes (%d accounted), want at most %d", held, total, accounted, maxLoweredCacheBytes)
	}
}

func TestRegexGuard(t *testing.T) {
	for p, want := range map[string][][]string{
		`cuda out of memory`:          {{"cuda out of memory"}},
		`xid[: ]+\d+`:                 {{"xid"}},
		`(foo|bar) baz`:               {{"bar baz", "foo baz"}},
		`a|b`:                         nil,
		`(?:oom)?killed`:              {{"killed"}},
		`(unable to write)+ x`:        {{"unable to write"}},
		`x{0,3}memoryerror`:           {{"memoryerror"}},
		`\b(429|503)\b`:               {{"429", "503"}},
		`\b(429|50[0234])\b`:          {{"429", "500", "502", "503", "504"}},
		`(typeerror|nameerror)\b[:(]`: {{"nameerror(", "nameerror:", "typeerror(", "typeerror:"}},
		`waiting for [^\n]{0,80}(failed|timed out)`: {{"waiting for "}, {"failed", "timed out"}},
	} {
		_, got, err := lowerRegex(p)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("guard of %q = %q, want %q", p, got, want)
		}
	}
}

func TestDecide(t *testing.T) {
	files := map[string]string{"a.yaml": "rules:\n" +
		rule("generic-cuda", `has("cuda error")`, "hardware", 30, 0.6) +
		rule("device-assert", `has("device-side assert")`, "user_code", 80, 0.8) +
		rule("reset", `has("connection reset")`, "network_transient", 50, 0.7) +
		rule("refused", `has("connection refused")`, "network_transient", 50, 0.7) +
		rule("weak", `has("maybe")`, "timeout", 90, 0.3),
	}
	c := New(mustLoad(t, files), Options{})
	tests := []struct {
		name     string
		log      string
		category failure.Category
		conf     float64
		rules    []string
		alts     []failure.Category
	}{
		{"nothing matches", "all good", failure.Unknown, 0, []string{}, nil},
		{"priority beats confidence", "CUDA error: device-side assert triggered", failure.UserCode, 0.8, []string{"device-assert"}, []failure.Category{failure.Hardware}},
		{"evidence combines", "connection reset\nconnection refused", failure.NetworkTransient, 0.91, []string{"reset", "refused"}, nil},
		{"low confidence is unknown", "maybe a timeout", failure.Unknown, 0, []string{}, []failure.Category{failure.Timeout}},
		{"a weak high-priority rule does not hide a confident one", "maybe\nconnection reset", failure.Unknown, 0, []string{}, []failure.Category{failure.Timeout, failure.NetworkTransient}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Classify(event("Error", 1, "", tt.log))
			if got.Category != tt.category || got.Confidence != tt.conf || !reflect.DeepEqual(got.Rules, tt.rules) {
				t.Errorf("Classify(%q) = %s %.3f %v, want %s %.3f %v", tt.log, got.Category, got.Confidence, got.Rules, tt.category, tt.conf, tt.rules)
			}
			var alts []failure.Category
			for _, a := range got.Alternatives {
				alts = append(alts, a.Category)
			}
			if !reflect.DeepEqual(alts, tt.alts) {
				t.Errorf("Classify(%q) alternatives = %v, want %v", tt.log, alts, tt.alts)
			}
			if got.Category == failure.Unknown && (got.Retryable || got.Action != failure.NoRetry) {
				t.Errorf("unknown result is retryable=%v action=%s, want false, no_retry", got.Retryable, got.Action)
			}
		})
	}
}

func TestUnknownWhenConfidenceBelowOption(t *testing.T) {
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("r", `has("x")`, "timeout", 1, 0.6)})
	ev := event("", 1, "", "x")
	if got := New(rs, Options{}).Classify(ev); got.Category != failure.Timeout {
		t.Errorf("default MinConfidence: category %s, want timeout", got.Category)
	}
	if got := New(rs, Options{MinConfidence: 0.7}).Classify(ev); got.Category != failure.Unknown {
		t.Errorf("MinConfidence 0.7: category %s, want unknown", got.Category)
	}
}

func TestEvidence(t *testing.T) {
	files := map[string]string{"a.yaml": "rules:\n" +
		rule("oom", `exitCode == 137 and has("killed")`, "oom_memory", 50, 0.9) +
		rule("other", `has("unrelated")`, "timeout", 10, 0.9),
	}
	c := New(mustLoad(t, files), Options{MaxEvidence: 4})
	long := "Killed " + strings.Repeat("é", 400)
	log := "step 1\nunrelated line\nprocess Killed\nstep 2\n" + long + "\nKILLED again"
	ev := event("Error", 137, "", log)
	ev.Job.Resources.MemoryBytes = 8 << 30
	ev.Failure.Usage.PeakMemoryBytes = 8 << 30
	got := c.Classify(ev).Evidence
	if len(got) != 4 {
		t.Fatalf("Evidence = %q, want 4 lines (MaxEvidence)", got)
	}
	if got[0] != `reason: "Error", exit code 137 (signal 9)` {
		t.Errorf("Evidence[0] = %q, want the termination fields the rule read", got[0])
	}
	if got[1] != "peak memory 8Gi of the 8Gi limit (100%)" {
		t.Errorf("Evidence[1] = %q, want the memory peak", got[1])
	}
	if got[2] != "process Killed" {
		t.Errorf("Evidence[2] = %q, want the first matching log line", got[2])
	}
	if len(got[3]) > maxEvidenceLine || !strings.HasSuffix(got[3], "…") || !strings.HasPrefix(got[3], "Killed é") {
		t.Errorf("Evidence[3] = %q (%d bytes), want the long line clipped to %d bytes", got[3], len(got[3]), maxEvidenceLine)
	}
	for _, line := range got {
		if strings.Contains(line, "unrelated") {
			t.Errorf("Evidence %q includes a line only a losing rule matched", got)
		}
	}
}

func TestCheckReportsFailingTests(t *testing.T) {
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("r", `has("boom")`, "timeout", 1, 0.9) + `tests:
  - name: passes
    event: {failure: {logTail: "boom"}}
    expect: {category: timeout, retryable: true, rules: [r], evidence: [boom]}
  - name: wrong category
    event: {failure: {logTail: "boom"}}
    expect: {category: oom_memory}
  - name: wrong evidence
    event: {failure: {logTail: "boom"}}
    expect: {category: timeout, evidence: ["not there"]}
`})
	failures := New(rs, Options{}).Check()
	var names []string
	for _, f := range failures {
		names = append(names, f.Case.Name)
	}
	if !reflect.DeepEqual(names, []string{"wrong category", "wrong evidence"}) {
		t.Fatalf("Check failures = %v, want [wrong category wrong evidence]", names)
	}
	if msg := failures[0].Error(); !strings.Contains(msg, "a.yaml:14: test \"wrong category\": category = timeout (rules [r]), want oom_memory") {
		t.Errorf("failure message = %q", msg)
	}
}

func TestClassifyConcurrently(t *testing.T) {
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" +
		rule("a", `has("alpha")`, "timeout", 10, 0.9) + rule("b", "grep(`beta \\d+`)", "preempted", 20, 0.9)})
	c := New(rs, Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				log, want := "alpha", failure.Timeout
				if (g+i)%2 == 0 {
					log, want = fmt.Sprintf("beta %d", i), failure.Preempted
				}
				if got := c.Classify(event("", 1, "", log)); got.Category != want || !slices.Equal(got.Evidence, []string{log}) {
					t.Errorf("Classify(%q) = %s %q, want %s [%q]", log, got.Category, got.Evidence, want, log)
					return
				}
			}
		})
	}
	wg.Wait()
}

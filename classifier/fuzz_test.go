package classifier_test

import (
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
)

// FuzzLoad feeds arbitrary rule files to Load: it must return a rule set or an error,
// never panic, and a rule set it returns must classify without panicking.
func FuzzLoad(f *testing.F) {
	f.Add("rules:\n  - id: r\n    description: d\n    expr: grep(`(a|b)+c`) and has(\"x\")\n    category: timeout\n    retryable: true\n    action: extend_timeout\n    confidence: 0.5\n    priority: 1\n")
	f.Add("rules: [{id: r, description: d, expr: 'logGrep(\"^$\")', category: hardware, retryable: true, action: reschedule, confidence: 1, priority: 0}]")
	// Conditions that would exhaust memory or a core if they compiled (Load refuses
	// them) or that the string budget stops (the let and + chains).
	for _, expr := range []string{
		`repeat(log, 300000) != ""`,
		`reduce(1..40, #acc + #acc, log) != ""`,
		`let a = log + log; let b = a + a; let c = b + b; let d = c + c; let e = d + d; let f = e + e; len(f) > 0`,
		`log + log + log + log + log + log + log + log + log + log + log + log + log + log + log + log + log != ""`,
		`len(1..1000000000) > 0`,
		`replace(log, "", log) != "" or join(lines, log) != ""`,
		`count(lines, count(lines, true) > 0) > 0`,
		`message matches log`,
		`_grep(logLower, 9999, _st)`,
		strings.Repeat("(", 5000) + "true" + strings.Repeat(")", 5000),
		"exitCode == " + strings.Repeat("1+", 1000) + "1",
	} {
		f.Add("rules:\n  - id: r\n    description: d\n    expr: '" + strings.ReplaceAll(expr, "'", "''") +
			"'\n    category: timeout\n    retryable: true\n    action: extend_timeout\n    confidence: 0.5\n    priority: 1\n")
	}
	ev := &failure.Event{ID: "e", Job: failure.Job{Name: "j"}, Failure: failure.Signals{
		Reason: "Error", ExitCode: 137, Message: "m", LogTail: "a\nKilled\nCUDA out of memory\n"}}
	f.Fuzz(func(t *testing.T, file string) {
		rs, err := classifier.Load(fstest.MapFS{"f.yaml": {Data: []byte(file)}})
		if err != nil {
			return
		}
		got := classifier.New(rs, classifier.Options{}).Classify(ev)
		if got.Confidence < 0 || got.Confidence > 1 || !got.Category.Valid() {
			t.Fatalf("Classify = %+v", got)
		}
	})
}

var (
	defaultOnce sync.Once
	defaultC    *classifier.Classifier
	tables      = map[string]bool{} // the knowledge tables' names, which start their evidence lines
)

// FuzzClassify runs the default classifier (rules, knowledge tables, model) on
// arbitrary failure text: the result must be a valid category with a confidence in
// [0, 1], with supporting rules unless unknown or learned, and every evidence line
// must come from the event or say what the model or a knowledge table found.
func FuzzClassify(f *testing.F) {
	f.Add("Error", 1, "", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
	f.Add("OOMKilled", 137, "", "")
	f.Add("ErrImagePull", 0, "manifest unknown: manifest unknown", "")
	f.Add("Error", 1, "", "NVRM: Xid (PCI:0000:3b:00): 79\n\xff\xfe invalid utf8 Killed")
	f.Fuzz(func(t *testing.T, reason string, exitCode int, message, log string) {
		defaultOnce.Do(func() {
			c, err := classifier.LoadDefault(classifier.Sources{}, classifier.Options{})
			if err != nil {
				panic(err)
			}
			defaultC = c
			for _, e := range c.Knowledge().Entries() {
				tables[e.Table] = true
			}
		})
		ev := &failure.Event{ID: "e", Job: failure.Job{Name: "j", Attempt: 1},
			Failure: failure.Signals{Reason: reason, ExitCode: exitCode, Message: message, LogTail: log}}
		got, errs := defaultC.ClassifyErrors(ev)
		if len(errs) > 0 {
			t.Fatalf("rules failed to evaluate: %v", errs)
		}
		if !got.Category.Valid() || got.Confidence < 0 || got.Confidence > 1 {
			t.Fatalf("Classify = %+v", got)
		}
		if got.Category == failure.Unknown && len(got.Rules) > 0 || got.Category != failure.Unknown && len(got.Rules) == 0 && !got.Learned {
			t.Fatalf("category %s with rules %v, learned %v", got.Category, got.Rules, got.Learned)
		}
		for _, line := range got.Evidence {
			line = strings.TrimSuffix(line, "…")
			if strings.HasPrefix(line, "reason: ") || strings.HasPrefix(line, "peak ") ||
				strings.HasPrefix(line, "the learned model says ") || tables[strings.SplitN(line, " ", 2)[0]] {
				continue
			}
			if !strings.Contains(message, line) && !strings.Contains(log, line) {
				t.Fatalf("evidence %q is not in the event", line)
			}
		}
	})
}

// FuzzReadLabelled feeds arbitrary labelled files to ReadLabelled and scores what it
// returns: a bad line is an error, never a panic, and the either-label counts are
// never worse than the first labels' (an answer either labeller gave is right; a
// retry is false only when both said no retry can fix the failure), nor is a false
// retry counted outside the failures both called not retryable.
func FuzzReadLabelled(f *testing.F) {
	f.Add(`{"id":"a","job":{"name":"j"},"failure":{"logTail":"CUDA out of memory"},"expected":{"category":"oom_gpu","retryable":true},"second":{"category":"config_error","retryable":false},"ambiguous":true}`)
	f.Add(`{"id":"a","job":{"name":"j"},"failure":{"message":"connection refused"},"expected":{"category":"config_error","retryable":false},"second":null,"ambiguous":true}` + "\n" +
		`{"id":"b","job":{"name":"j"},"failure":{"logTail":"x"},"expected":{"category":"unknown","retryable":false},"second":{"category":"slow"}}`)
	f.Add(`{"id":"a","job":{"name":"j"},"failure":{},"expected":{"category":"timeout","retryable":true},"second":[1,2],"ambiguous":"yes"}`)
	rs := mustLoadDefault(f)
	f.Fuzz(func(t *testing.T, file string) {
		items, err := classifier.ReadLabelled(strings.NewReader(file))
		if err != nil {
			return
		}
		r := classifier.Evaluate(rs, items)
		if r.Total != len(items) || r.CategoryCorrect > r.Total || r.RetryCorrect > r.Total {
			t.Fatalf("report %+v of %d items", r, len(items))
		}
		e := r.Either
		if e == nil {
			return
		}
		if e.Total != r.Total || e.CategoryCorrect < r.CategoryCorrect || e.RetryCorrect < r.RetryCorrect ||
			e.FalseRetries > r.FalseRetries || e.NotRetryable > r.NotRetryable || e.FalseRetries > e.NotRetryable {
			t.Fatalf("either label %+v worse than the first labels %+v", *e, r)
		}
	})
}

// mustLoadDefault is the embedded rules and knowledge, without the model (fast).
func mustLoadDefault(tb testing.TB) *classifier.Classifier {
	tb.Helper()
	c, err := classifier.LoadDefault(classifier.Sources{ModelFile: classifier.NoModel}, classifier.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

package classifier

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/rules"
)

// embeddedRuleFiles returns the embedded rule files, with edit applied to each.
func embeddedRuleFiles(t *testing.T, edit func(name, text string) string) fstest.MapFS {
	t.Helper()
	names, err := fs.Glob(rules.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{}
	for _, name := range names {
		data, err := fs.ReadFile(rules.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		fsys[name] = &fstest.MapFile{Data: []byte(edit(name, string(data)))}
	}
	return fsys
}

// TestWithRulesDropsAModelTheRulesDoNotFit: a model that reads which rules matched
// is used only with the rules it was trained with (Model.Fits, as LoadDefault
// enforces). WithRules — what POST /v1/rules:test and POST /v1/rules:diff build their
// candidate with — must not hand such a model other rules' matches.
func TestWithRulesDropsAModelTheRulesDoNotFit(t *testing.T) {
	c, err := LoadDefault(Sources{ModelFile: NoModel}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithModel(&Model{ruleFeatures: true, rulesDigest: c.RuleSet().Digest()})
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("oom-killed", `reason == "OOMKilled"`, "oom_memory", 100, 0.9)})
	cand := c.WithRules(rs)
	if m := cand.Model(); m != nil && !m.Fits(rs) {
		t.Errorf("WithRules(other rules) keeps a model trained with other rules' matches (digest %.12s, the rules' %.12s)", m.rulesDigest, rs.Digest())
	}
}

// TestModelFitsRulesThatDifferOnlyInWhatItDoesNotRead: the model's rule features are
// the ids and categories of the rules that matched. Rules that differ only in a
// confidence (or a priority, a retry decision or an action) give every event the same
// features, so the model still fits them; otherwise tuning a rule's confidence
// silently drops the model (LoadDefault) and every learned decision shows as a change
// in autofix rules diff.
func TestModelFitsRulesThatDifferOnlyInWhatItDoesNotRead(t *testing.T) {
	c, err := LoadDefault(Sources{ModelFile: NoModel}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &Model{ruleFeatures: true, rulesDigest: c.RuleSet().Digest()}
	const from, to = "    confidence: 0.97\n", "    confidence: 0.96\n"
	edited := false
	tuned, err := Load(embeddedRuleFiles(t, func(name, text string) string {
		if !edited && strings.Contains(text, from) {
			edited = true
			return strings.Replace(text, from, to, 1)
		}
		return text
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !edited {
		t.Fatal("no rule of confidence 0.97 to tune")
	}
	if !m.Fits(c.RuleSet()) {
		t.Fatal("the embedded model does not fit the embedded rules")
	}
	if !m.Fits(tuned) {
		t.Errorf("the embedded model does not fit the embedded rules with one confidence changed from 0.97 to 0.96, though its features are the same")
	}
}

// hostileTable is a knowledge table of about n bytes of phrases, each 190 bytes over
// a hundred distinct bytes, sharing no prefix: an automaton state per byte.
func hostileTable(n int) string {
	alpha := []rune("abcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./;<=>?@[]^_`{|}~ ")
	for r := rune(0x100); r < 0x180; r++ {
		alpha = append(alpha, r)
	}
	var b strings.Builder
	b.WriteString("table: hostile\nentries:\n  - key: k\n    category: timeout\n    retryable: false\n    confidence: 0.5\n    match:\n")
	for i, total := 0, 0; total < n; i++ {
		var p strings.Builder
		x := uint32(i)*2654435761 + 1
		for p.Len() < 190 {
			p.WriteRune(alpha[int(x>>8)%len(alpha)])
			x = x*1664525 + 1013904223
		}
		s := strings.ReplaceAll(p.String(), "'", "")
		fmt.Fprintf(&b, "      - '%s'\n", s)
		total += len(s)
	}
	return b.String()
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestKnowledgeAutomatonIsBoundedByItsInput: knowledge tables are untrusted (a
// configured directory, the body of an admin's POST /v1/rules:diff, up to 4 MiB, and
// 20,000 phrases of 200 bytes are within the limits). The phrase automaton is a dense
// table of states x byte classes, so a table of long phrases over many distinct bytes
// costs thousands of times its size: about 100 MB for this 70 KB table, so some GB
// for a 4 MiB request (and New builds it a second time, merged with the rules'
// literals). Loading must refuse such a table, or build something proportionate.
func TestKnowledgeAutomatonIsBoundedByItsInput(t *testing.T) {
	table := hostileTable(64 << 10)
	var loadErr error
	n := allocated(func() { _, loadErr = LoadKnowledge(fstest.MapFS{"hostile.yaml": {Data: []byte(table)}}) })
	if limit := uint64(200 * len(table)); n > limit {
		t.Errorf("LoadKnowledge of a %d-byte table allocated %d MB (%dx its size; error %v), want at most 200x",
			len(table), n>>20, n/uint64(len(table)), loadErr)
	}
}

// TestKnowledgeFileOverTheLimitIsNotRead: a knowledge file over the 1 MiB limit is
// refused without reading it whole (classifier.knowledge may name a directory that
// holds anything: a huge file, a symlink to /dev/zero).
func TestKnowledgeFileOverTheLimitIsNotRead(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "huge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var loadErr error
	n := allocated(func() { _, loadErr = LoadKnowledge(os.DirFS(dir)) })
	if loadErr == nil || !strings.Contains(loadErr.Error(), "huge.yaml") {
		t.Errorf("LoadKnowledge of a 64 MiB file = %v, want an error naming huge.yaml", loadErr)
	}
	if n > 8<<20 {
		t.Errorf("refusing a 64 MiB knowledge file allocated %d MB: it was read whole before its size was checked", n>>20)
	}
}

// TestErrorLinesScanIsLinear: the single scan notes, for each error word in the log,
// the start of its line. Looking for it backwards from each occurrence is quadratic in
// a long line: a 64 KiB log tail (failure.MaxLogTail) of one line full of error words
// searched the line once per word, about a thousand times the log. The cursor that
// finds line starts must search each byte of the log at most once, and still find
// every line's start.
func TestErrorLinesScanIsLinear(t *testing.T) {
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("r", `has("zzz")`, "timeout", 1, 0.9)})
	c := New(rs, Options{})
	const n = failure.MaxLogTail
	for _, tc := range []struct {
		name string
		log  string
		want []int // the starts of the lines with error words
	}{
		{"one line", strings.Repeat("oom", n/3), []int{0}},
		{"short lines", strings.Repeat("oom oom oom oo\n", n/15), nil},
	} {
		ev := event("Error", 1, "", tc.log)
		st := c.pool.Get().(*state)
		st.prepare(ev, c.rules, c.scan)
		marks, searched := slices.Clone(st.features.marks), st.line.searched
		st.release()
		c.pool.Put(st)
		if searched > len(tc.log) {
			t.Errorf("%s: %d bytes searched for line breaks in a %d-byte log: more than once each", tc.name, searched, len(tc.log))
		}
		want := tc.want
		if want == nil {
			for s := 0; s < len(tc.log); s += 15 {
				want = append(want, s)
			}
		}
		if !slices.Equal(marks, want) {
			t.Errorf("%s: %d line starts (first %v), want %d (first %v)", tc.name, len(marks), marks[:min(3, len(marks))], len(want), want[:min(3, len(want))])
		}
	}
}

// TestTrainRefusesFoldsItCannotMake: --folds (and the options an artifact records,
// which train-classifier --check retrains with) must be refused when too large,
// not overflow: 2*Folds wraps negative and passes Train's check against the number of
// examples, and uint32(Folds) is 0 in assignFolds (an integer division by zero).
func TestTrainRefusesFoldsItCannotMake(t *testing.T) {
	base := New(mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("r", `has("zzz")`, "timeout", 1, 0.9)}), Options{})
	var items []Labelled
	for i := range 8 {
		cat := failure.Timeout
		if i%2 == 0 {
			cat = failure.UserCode
		}
		items = append(items, Labelled{Event: *event("Error", 1, fmt.Sprintf("message %d", i), ""), Expected: Label{Category: cat}})
	}
	try := func(name string, f func() error) {
		t.Helper()
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s panicked: %v", name, r)
			}
		}()
		if err := f(); err == nil {
			t.Errorf("%s of 8 examples: no error", name)
		}
	}
	try("Train with 1<<62 folds", func() error {
		_, _, err := Train(base, items, TrainOptions{Folds: 1 << 62, MaxIterations: 5})
		return err
	})
	// CrossValidate (train-classifier --cv) checks no count at all: uint32(1<<32) is 0.
	try("CrossValidate with 1<<32 folds", func() error {
		_, err := CrossValidate(base, items, TrainOptions{Folds: 1 << 32, MaxIterations: 5})
		return err
	})
}

// TestCVFiguresDecideRetriesAsTheModelDoes: the held-out figures (and so the retry
// threshold they choose) score "the held-out predictions as the model alone would
// decide" (cvFigures). fromModel retries only a category a retry can fix; a failure
// the model calls user_code is never retried, however high P(retry) is from the other
// categories' share.
func TestCVFiguresDecideRetriesAsTheModelDoes(t *testing.T) {
	classes := []failure.Category{failure.UserCode, failure.NetworkTransient}
	// The model says user_code at 0.55; P(retry) is 0.45 (network_transient's share),
	// over a threshold of 0.35.
	probs := [][]float64{{0.55, 0.45}}
	pRetries := []float64{pRetry(classes, probs[0], 0.5)}
	exs := []example{{class: 0, retry: false}}
	cv := cvFigures(probs, pRetries, exs, classes, 0.35, 0.3, 5)
	if cv.FalseRetryRate != 0 || cv.RetryAccuracy != 1 {
		t.Errorf("a failure the model calls user_code (not retried by fromModel) scored false retries %.2f, retry accuracy %.2f; want 0 and 1",
			cv.FalseRetryRate, cv.RetryAccuracy)
	}
}

// TestEvidenceIsBoundedWithTheModel: MaxEvidence bounds a result's evidence lines,
// the learned model's line included.
func TestEvidenceIsBoundedWithTheModel(t *testing.T) {
	c, err := LoadDefault(Sources{}, Options{MaxEvidence: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*failure.Event{
		event("Error", 1, "", "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad value in column 3\nerror: something failed"),
		event("Error", 1, "connection reset by peer", "requests.exceptions.ConnectionError: connection reset by peer\nerror: retry failed\nfatal: giving up"),
		event("OOMKilled", 137, "", "Killed"),
	} {
		cl := c.Classify(ev)
		if len(cl.Evidence) > 2 {
			t.Errorf("%s/%s (learned %v): %d evidence lines with MaxEvidence 2: %q", ev.Failure.Reason, cl.Category, cl.Learned, len(cl.Evidence), cl.Evidence)
		}
	}
}

// TestErrorLinesAreLinesOfTheLog: the model reads the log's error lines at the
// offsets the scan of the lower-cased log found. Lower-casing can move bytes while
// keeping the length (the Kelvin sign shrinks from 3 bytes to 1, each Ⱥ grows from 2
// to 3), so offsets of the lower-cased text are not offsets of the log: the lines
// read must still be the log's lines (the features, and the evidence shown when no
// rule supports the model, come from them).
func TestErrorLinesAreLinesOfTheLog(t *testing.T) {
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("r", `has("zzz")`, "timeout", 1, 0.9)})
	c := New(rs, Options{})
	log := "\u212a units\nValueError: the batch is bad\nfatal: giving up\n\u023a\u023a"
	if len(strings.ToLower(log)) != len(log) {
		t.Fatal("lower-casing changes the log's length: the test needs one that keeps it")
	}
	ev := event("Error", 1, "", log)
	st := c.pool.Get().(*state)
	defer c.pool.Put(st)
	st.prepare(ev, c.rules, c.scan)
	defer st.release()
	c.match(st, nil)
	c.features(st, ev, false)
	lines := strings.Split(log, "\n")
	for _, got := range st.features.lines {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.EqualFold(l, got) }) {
			t.Errorf("error line %q is not a line of the log %q (read: %q)", got, log, st.features.lines)
		}
	}
}

// TestRulesAutomatonIsBoundedByItsInput: the rules' literals build the same dense
// automaton (literals.go), and rule files are as untrusted (POST /v1/rules:test and
// POST /v1/rules:diff take up to 4 MiB of them): the literals of this 73 KB file cost
// about 100 MB, so a 4 MiB body some GB, twice (RuleSet, then New's merged scanner).
func TestRulesAutomatonIsBoundedByItsInput(t *testing.T) {
	var lits []string
	for _, l := range strings.Split(hostileTable(64<<10), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "- '") {
			lits = append(lits, strings.Trim(l[2:], "'"))
		}
	}
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := 0; i < len(lits); i += 10 {
		var args []string
		for _, l := range lits[i:min(i+10, len(lits))] {
			args = append(args, strconv.Quote(l))
		}
		b.WriteString(rule(fmt.Sprintf("r%d", i), "has("+strings.Join(args, ", ")+")", "timeout", 1, 0.9))
	}
	src := b.String()
	var loadErr error
	n := allocated(func() { _, loadErr = Load(mapFS(map[string]string{"a.yaml": src})) })
	if limit := uint64(200 * len(src)); n > limit {
		t.Errorf("Load of a %d-byte rule file allocated %d MB (%dx its size; error %v), want at most 200x",
			len(src), n>>20, n/uint64(len(src)), loadErr)
	}
}

// TestSeparateKnowledgeScanFindsTheSameHits: when rules and knowledge together would
// make too large an automaton, the phrases are scanned on their own, with the same
// hits and the same classification.
func TestSeparateKnowledgeScanFindsTheSameHits(t *testing.T) {
	c, err := LoadDefault(Sources{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sep := New(c.rules, c.opts)
	sep.scan = newScanner(c.rules, c.opts.Knowledge, 0)
	if !sep.scan.separate || c.scan.separate {
		t.Fatalf("separate: forced %v, default %v", sep.scan.separate, c.scan.separate)
	}
	for _, ev := range []*failure.Event{
		event("OOMKilled", 137, "", "Killed"),
		event("Error", 1, "status code: 503", "OSError: [Errno 28] No space left on device\nthrottled by the server"),
		event("Error", 1, "", "RuntimeError: CUDA error: an illegal memory access was encountered"),
	} {
		a, b := c.Classify(ev), sep.Classify(ev)
		if !slices.Equal(a.Evidence, b.Evidence) || a.Category != b.Category || a.Confidence != b.Confidence {
			t.Errorf("%s: merged scan %+v, separate %+v", ev.Failure.LogTail, a, b)
		}
	}
}

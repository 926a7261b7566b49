package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
)

// labelledLine is one line of the corpus format: a failure event whose log tail names
// its label and number, so that a test can tell which message an event carries.
func labelledLine(cat failure.Category, retryable bool, i int) string {
	line, err := json.Marshal(map[string]any{
		"id":       fmt.Sprintf("t-%s-%v-%d", cat, retryable, i),
		"job":      map[string]any{"name": "from-a-thread", "kind": "batch"},
		"failure":  map[string]any{"reason": "Error", "exitCode": 1, "logTail": markerOf(cat, retryable, i)},
		"expected": map[string]any{"category": cat, "retryable": retryable},
		"source":   "https://example.invalid/issues/1",
	})
	if err != nil {
		panic(err)
	}
	return string(line)
}

func markerOf(cat failure.Category, retryable bool, i int) string {
	return fmt.Sprintf("real %s %v %d\n", cat, retryable, i)
}

// parseMarker reads back the label of a test message from an event's log tail.
func parseMarker(logTail string) (cat failure.Category, retryable bool, i int, ok bool) {
	n, err := fmt.Sscanf(logTail, "real %s %t %d\n", &cat, &retryable, &i)
	return cat, retryable, i, err == nil && n == 3
}

// testCorpus has n messages of each label given, per retry decision given.
func testCorpus(t testing.TB, n int, labels map[failure.Category][]bool) *Corpus {
	t.Helper()
	var b strings.Builder
	for cat, decisions := range labels {
		for _, r := range decisions {
			for i := range n {
				b.WriteString(labelledLine(cat, r, i) + "\n")
			}
		}
	}
	c, err := ParseCorpus(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// everyCategory labels every category of the taxonomy both ways.
func everyCategory() map[failure.Category][]bool {
	m := map[failure.Category][]bool{}
	for _, c := range failure.Categories() {
		m[c] = []bool{true, false}
	}
	return m
}

func TestParseText(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    Text
		wantErr string
	}{
		{"rendered", TextRendered, ""},
		{"real", TextReal, ""},
		{"", "", `want rendered or real, got ""`},
		{"Real", "", `want rendered or real, got "Real"`},
	} {
		got, err := ParseText(tt.in)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseText(%q) = %q, %v; want %q, error containing %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	var s Scenario
	if got := s.TextSource(); got != TextRendered {
		t.Errorf("TextSource() of a scenario without text = %q, want rendered", got)
	}
}

func TestParseCorpusRejectsMalformedLines(t *testing.T) {
	good := labelledLine(failure.OOMMemory, true, 0)
	for _, tt := range []struct {
		name, data, want string
	}{
		{"empty", "", "no messages"},
		{"blank lines only", "\n  \n\n", "no messages"},
		{"not JSON", good + "\n{\"id\": \n", "line 2: "},
		{"an array", good + "\n[1]\n", "line 2: payload: want a JSON object"},
		{"no expected", `{"id":"x","job":{"name":"j"},"failure":{"reason":"Error"}}`, "line 1: expected: required"},
		{"expected not an object", `{"id":"x","job":{"name":"j"},"failure":{"reason":"Error"},"expected":"oom"}`, "line 1: expected: "},
		{"no category", `{"id":"x","job":{"name":"j"},"failure":{"reason":"Error"},"expected":{"retryable":true}}`, "line 1: expected.category: required"},
		{"unknown category", `{"id":"x","job":{"name":"j"},"failure":{"reason":"Error"},"expected":{"category":"oom","retryable":true}}`, `line 1: expected.category: unknown category "oom"`},
		{"no retryable", `{"id":"x","job":{"name":"j"},"failure":{"reason":"Error"},"expected":{"category":"oom_gpu"}}`, "line 1: expected.retryable: required"},
		{"retryable not a bool", `{"id":"x","job":{"name":"j"},"failure":{"reason":"Error"},"expected":{"category":"oom_gpu","retryable":"yes"}}`, "line 1: expected: "},
		{"empty category", `{"id":"x","job":{"name":"j"},"failure":{"reason":"Error"},"expected":{"category":"","retryable":true}}`, `line 1: expected.category: unknown category ""`},
		{"bad event", `{"id":"x","job":{"name":"j"},"failure":{"exitCode":"one"},"expected":{"category":"oom_gpu","retryable":true}}`, "line 1: failure.exitCode"},
		{"no job name", `{"id":"x","job":{},"failure":{"reason":"Error"},"expected":{"category":"oom_gpu","retryable":true}}`, "line 1: job.name"},
		{"a line too long", good + "\n" + `{"id":"` + strings.Repeat("x", failure.MaxPayload+1) + "\"}\n", "line 2: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCorpus(strings.NewReader(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseCorpus = %v, %v; want an error containing %q", c, err, tt.want)
			}
		})
	}
}

func TestParseCorpusIndexesByLabel(t *testing.T) {
	data := labelledLine(failure.ImagePull, false, 0) + "\n\n" + labelledLine(failure.ImagePull, true, 1) + "\n" +
		labelledLine(failure.ImagePull, false, 2) + "\n" + labelledLine(failure.Timeout, true, 3)
	c, err := ParseCorpus(strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 4 {
		t.Errorf("Len() = %d, want 4", c.Len())
	}
	for _, tt := range []struct {
		cat       failure.Category
		retryable bool
		lines     []int
	}{
		{failure.ImagePull, false, []int{1, 4}},
		{failure.ImagePull, true, []int{3}},
		{failure.Timeout, true, []int{5}},
		{failure.Timeout, false, nil},
		{failure.OOMGPU, true, nil},
	} {
		var lines []int
		for _, m := range c.Messages(tt.cat, tt.retryable) {
			lines = append(lines, m.Line)
			if m.Category != tt.cat || m.Retryable != tt.retryable || m.Source == "" || m.ID == "" || m.Reason != "Error" || m.ExitCode != 1 {
				t.Errorf("message %+v under %s/%v", m, tt.cat, tt.retryable)
			}
			if cat, r, _, ok := parseMarker(m.LogTail); !ok || cat != tt.cat || r != tt.retryable {
				t.Errorf("message of line %d has log tail %q, want its own", m.Line, m.LogTail)
			}
		}
		if fmt.Sprint(lines) != fmt.Sprint(tt.lines) {
			t.Errorf("Messages(%s, %v) are lines %v, want %v", tt.cat, tt.retryable, lines, tt.lines)
		}
	}
}

// TestDrawKeepsTheCausesRetryDecision: a simulated cause is retryable or not by its
// category, so only messages labelled that way are drawn for it.
func TestDrawKeepsTheCausesRetryDecision(t *testing.T) {
	for _, tt := range []struct {
		name   string
		labels map[failure.Category][]bool
		cause  failure.Category
		want   bool // a message is drawn
	}{
		{"image pull, both kinds", map[failure.Category][]bool{failure.ImagePull: {true, false}}, failure.ImagePull, true},
		{"image pull, only ones that cannot succeed", map[failure.Category][]bool{failure.ImagePull: {false}}, failure.ImagePull, false},
		{"timeout, only ones labelled not retryable", map[failure.Category][]bool{failure.Timeout: {false}}, failure.Timeout, false},
		{"user code, only ones labelled retryable", map[failure.Category][]bool{failure.UserCode: {true}}, failure.UserCode, false},
		{"user code, both kinds", map[failure.Category][]bool{failure.UserCode: {true, false}}, failure.UserCode, true},
		{"another category only", map[failure.Category][]bool{failure.OOMGPU: {true}}, failure.OOMMemory, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := testCorpus(t, 5, tt.labels)
			for i := range 50 {
				m, ok := c.draw(rng(1, uint64(i)), tt.cause)
				if ok != tt.want {
					t.Fatalf("draw(%s) ok = %v, want %v", tt.cause, ok, tt.want)
				}
				if ok && (m.Category != tt.cause || m.Retryable != tt.cause.DefaultRetryable()) {
					t.Fatalf("draw(%s) = a message labelled %s/%v, want %s/%v", tt.cause, m.Category, m.Retryable,
						tt.cause, tt.cause.DefaultRetryable())
				}
			}
		})
	}
}

// TestEmbeddedRealTextLoads checks the embedded file's format, whatever messages it
// holds: it parses, and reads the same with the classifier's reader of the corpus.
func TestEmbeddedRealTextLoads(t *testing.T) {
	c, err := RealText()
	if err != nil {
		t.Fatal(err)
	}
	items, err := classifier.ReadLabelled(bytes.NewReader(embeddedMessages))
	if err != nil {
		t.Fatalf("classifier.ReadLabelled(%s): %v", embeddedName, err)
	}
	if c.Len() != len(items) || c.Len() == 0 {
		t.Fatalf("%s: %d messages, classifier.ReadLabelled reads %d", embeddedName, c.Len(), len(items))
	}
	for _, it := range items {
		found := false
		for _, m := range c.Messages(it.Expected.Category, it.Expected.Retryable) {
			found = found || m.Line == it.Line && m.LogTail == it.Event.Failure.LogTail && m.Message == it.Event.Failure.Message &&
				m.Reason == it.Event.Failure.Reason && m.ExitCode == it.Event.Failure.ExitCode
		}
		if !found {
			t.Errorf("%s line %d (%s/%v) is not indexed under its label", embeddedName, it.Line, it.Expected.Category, it.Expected.Retryable)
		}
	}
}

// TestMalformedEmbeddedFileStopsTheRun: a broken embedded file is an error naming
// the file and line when a simulation asks for real text, not a silent fallback to
// rendered text.
func TestMalformedEmbeddedFileStopsTheRun(t *testing.T) {
	saved := loadEmbedded
	t.Cleanup(func() { loadEmbedded = saved })
	loadEmbedded = func() (*Corpus, error) {
		return parseEmbedded([]byte(labelledLine(failure.OOMMemory, true, 0) + "\n{\"id\":\"x\",\"job\":{\"name\":\"j\"}\n"))
	}
	s := defaultScenario(t)
	p, _ := Baseline("same")
	if _, err := Run(s, p, Options{Jobs: 300}); err != nil {
		t.Fatalf("rendered text: %v; the real messages must not be read", err)
	}
	s.Text = TextReal
	_, err := Run(s, p, Options{Jobs: 300})
	if want := embeddedName + ": line 2: "; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run with real text = %v, want an error containing %q", err, want)
	}
	if _, err := RealText(); err == nil {
		t.Fatal("RealText() accepted the malformed file")
	}
}

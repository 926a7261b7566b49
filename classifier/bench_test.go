package classifier_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/rules"
)

// benchEvents returns the labelled development events encoded as they arrive from
// Kafka, each log tail grown to about 4 KiB with the training-progress lines that
// precede a failure in real logs (the failure's own lines stay at the end).
func benchEvents(b *testing.B) [][]byte {
	b.Helper()
	f, err := os.Open("../rules/testdata/dev.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	items, err := classifier.ReadLabelled(f)
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	for i, it := range items {
		ev := it.Event
		var pre strings.Builder
		for step := 0; pre.Len()+len(ev.Failure.LogTail) < 4096; step++ {
			fmt.Fprintf(&pre, "2026-11-25 10:%02d:%02d,%03d INFO trainer.py:%d - epoch %d step %d/%d loss=%.4f lr=%.2e grad_norm=%.3f tokens/s=%d\n",
				step/60%60, step%60, (i*37+step*11)%1000, 200+step%50, step/100, step, 12000, 2.0/float64(step+1), 3e-4, 0.5+float64(step%7)/10, 41000+step*3)
		}
		ev.Failure.LogTail = pre.String() + ev.Failure.LogTail
		data, err := json.Marshal(ev)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// defaultClassifier is the classifier serve runs: the embedded rules, knowledge
// tables and model.
func defaultClassifier(b *testing.B) *classifier.Classifier {
	b.Helper()
	c, err := classifier.LoadDefault(classifier.Sources{}, classifier.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// plainEvent mirrors the FailureEvent schema with plain JSON types: the baseline cost
// of decoding and encoding an event with no validation and no classification.
type plainEvent struct {
	ID     string `json:"id"`
	Time   string `json:"time,omitempty"`
	Source string `json:"source,omitempty"`
	Job    struct {
		Namespace string            `json:"namespace,omitempty"`
		Name      string            `json:"name"`
		Kind      string            `json:"kind,omitempty"`
		Template  string            `json:"template,omitempty"`
		Attempt   int               `json:"attempt,omitempty"`
		Image     string            `json:"image,omitempty"`
		Resources map[string]any    `json:"resources,omitempty"`
		Params    map[string]string `json:"params,omitempty"`
		Labels    map[string]string `json:"labels,omitempty"`
	} `json:"job"`
	Failure struct {
		Reason          string         `json:"reason,omitempty"`
		ExitCode        int            `json:"exitCode,omitempty"`
		Message         string         `json:"message,omitempty"`
		LogTail         string         `json:"logTail,omitempty"`
		DurationSeconds float64        `json:"durationSeconds,omitempty"`
		Node            string         `json:"node,omitempty"`
		Usage           map[string]any `json:"usage,omitempty"`
	} `json:"failure"`
}

// BenchmarkJSONBaseline is the yardstick: plain encoding/json decode + encode of an event.
func BenchmarkJSONBaseline(b *testing.B) {
	events := benchEvents(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		var p plainEvent
		if err := json.Unmarshal(events[i%len(events)], &p); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(&p); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDecode is the validating decoder alone.
func BenchmarkDecode(b *testing.B) {
	events := benchEvents(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := failure.Decode(events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkClassify is classification alone with the default classifier: the rules
// decide alone where they are sure, the model is consulted on the rest.
func BenchmarkClassify(b *testing.B) { benchClassify(b, defaultClassifier(b)) }

// BenchmarkClassifyRulesOnly is the rules and knowledge tables without the model.
func BenchmarkClassifyRulesOnly(b *testing.B) {
	c, err := classifier.LoadDefault(classifier.Sources{ModelFile: classifier.NoModel}, classifier.Options{})
	if err != nil {
		b.Fatal(err)
	}
	benchClassify(b, c)
}

// BenchmarkClassifyModelAlways consults the model on every event (no rule has the
// authority to decide alone): the worst case.
func BenchmarkClassifyModelAlways(b *testing.B) {
	c, err := classifier.LoadDefault(classifier.Sources{}, classifier.Options{Authority: 1})
	if err != nil {
		b.Fatal(err)
	}
	benchClassify(b, c)
}

func benchClassify(b *testing.B, c *classifier.Classifier) {
	var evs []failure.Event
	for _, data := range benchEvents(b) {
		ev, err := failure.Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		evs = append(evs, ev)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Classify(&evs[i%len(evs)])
		i++
	}
}

// BenchmarkDecodeClassifyEncode is the whole path of `autofix classify` per event.
func BenchmarkDecodeClassifyEncode(b *testing.B) {
	c := defaultClassifier(b)
	events := benchEvents(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev, err := failure.Decode(events[i%len(events)])
		if err != nil {
			b.Fatal(err)
		}
		cl := c.Classify(&ev)
		if _, err := json.Marshal(struct {
			ID string `json:"id"`
			failure.Classification
		}{ev.ID, cl}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLoadDefaultRules is the one-off cost of compiling the default rule set.
func BenchmarkLoadDefaultRules(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := classifier.Load(rules.FS); err != nil {
			b.Fatal(err)
		}
	}
}

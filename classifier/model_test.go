package classifier_test

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
)

func readLabelled(t testing.TB, path string) []classifier.Labelled {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	items, err := classifier.ReadLabelled(f)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

var (
	trainOnce   sync.Once
	trainedM    *classifier.Model
	trainedRep  *classifier.TrainReport
	trainedBase *classifier.Classifier
	trainErr    error
)

// trained is a model trained once per test binary on the development set, quickly.
func trained(t testing.TB) (*classifier.Classifier, *classifier.Model, *classifier.TrainReport) {
	t.Helper()
	trainOnce.Do(func() {
		trainedBase, trainErr = classifier.LoadDefault(classifier.Sources{ModelFile: classifier.NoModel}, classifier.Options{})
		if trainErr != nil {
			return
		}
		items := readLabelled(t, "../rules/testdata/dev.jsonl")
		trainedM, trainedRep, trainErr = classifier.Train(trainedBase, items, classifier.TrainOptions{MaxIterations: 60, Folds: 3})
	})
	if trainErr != nil {
		t.Fatal(trainErr)
	}
	return trainedBase, trainedM, trainedRep
}

func TestTrainReportIsConsistent(t *testing.T) {
	_, m, rep := trained(t)
	n := 0
	for _, b := range rep.Reliability {
		n += b.Count
		if b.Count > 0 && (b.MeanPredict < b.Low || b.MeanPredict > b.High || b.Observed < 0 || b.Observed > 1) {
			t.Errorf("reliability bin %+v: mean outside the bin or observed outside [0, 1]", b)
		}
	}
	if n != m.Info().Examples {
		t.Errorf("reliability bins hold %d predictions, want one per example (%d)", n, m.Info().Examples)
	}
	for i := 1; i < len(rep.RetryCurve); i++ {
		a, b := rep.RetryCurve[i-1], rep.RetryCurve[i]
		if b.FalseRetryRate > a.FalseRetryRate || b.MissedRate < a.MissedRate {
			t.Errorf("curve at %.2f -> %.2f: false retries %.3f -> %.3f, missed %.3f -> %.3f: a higher threshold must retry less",
				a.Threshold, b.Threshold, a.FalseRetryRate, b.FalseRetryRate, a.MissedRate, b.MissedRate)
		}
	}
	chosen := -1
	for i, p := range rep.RetryCurve {
		if p.Threshold == rep.RetryThreshold {
			chosen = i
		}
	}
	target := m.Info().Options.TargetFalseRetry
	switch {
	case chosen < 0:
		t.Fatalf("threshold %.2f is not on the curve", rep.RetryThreshold)
	case rep.RetryCurve[chosen].FalseRetryRate > target && chosen != len(rep.RetryCurve)-1:
		t.Errorf("threshold %.2f has %.3f false retries, over the %.2f target", rep.RetryThreshold, rep.RetryCurve[chosen].FalseRetryRate, target)
	case chosen > 0 && rep.RetryCurve[chosen-1].FalseRetryRate <= target:
		t.Errorf("threshold %.2f is not the lowest within the target", rep.RetryThreshold)
	}
	if m.RetryThreshold() != rep.RetryThreshold {
		t.Errorf("model threshold %.2f, report %.2f", m.RetryThreshold(), rep.RetryThreshold)
	}
	if cv := rep.CV; cv.CategoryAccuracy <= 0.3 || cv.CategoryAccuracy > 1 || cv.LogLoss <= 0 || cv.Brier <= 0 {
		t.Errorf("held-out figures %+v: want a category accuracy well above chance and a positive log-loss", cv)
	}
}

func TestModelArtifactRoundTrips(t *testing.T) {
	base, m, _ := trained(t)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back classifier.Model
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	a, b := base.WithModel(m), base.WithModel(&back)
	for _, it := range readLabelled(t, "../rules/testdata/holdout-4.jsonl") {
		ga, gb := a.Classify(&it.Event), b.Classify(&it.Event)
		if ga.Category != gb.Category || ga.Retryable != gb.Retryable || math.Abs(ga.Confidence-gb.Confidence) > 1e-3 {
			t.Fatalf("%s: %+v before the round trip, %+v after", it.Event.ID, ga, gb)
		}
	}
}

func TestModelArtifactRefusesBadFields(t *testing.T) {
	_, m, _ := trained(t)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	nan := make([]byte, 4*(len(m.Classes())+1))
	binary.LittleEndian.PutUint32(nan, math.Float32bits(float32(math.NaN())))
	for _, tc := range []struct {
		field string
		value any
		want  string
	}{
		{"kind", "fallback-bernoulli-nb", "kind"},
		{"version", 9, "version"},
		{"buckets", 1000, "buckets"},
		{"buckets", 1 << 30, "buckets"},
		{"temperature", 0, "temperature"},
		{"retryThreshold", 1.5, "retryThreshold"},
		{"bias", []float64{1}, "bias"},
		{"classes", []string{"oom_memory", "oom_memory"}, "classes"},
		{"classes", []string{"oom_memory", "sad"}, "classes"},
		{"rows", "!!", "rows"},
		{"rows", base64.StdEncoding.EncodeToString([]byte{1, 2, 3}), "rows"},
		{"weights", base64.StdEncoding.EncodeToString([]byte{0, 0, 0, 0}), "weights"},
		{"rows", base64.StdEncoding.EncodeToString([]byte{0xff, 0xff, 0xff, 0x7f}), "weights"},
	} {
		t.Run(tc.field, func(t *testing.T) {
			bad := map[string]any{}
			for k, v := range fields {
				bad[k] = v
			}
			bad[tc.field] = tc.value
			data, _ := json.Marshal(bad)
			var got classifier.Model
			err := json.Unmarshal(data, &got)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s = %v: err %v, want one naming %s", tc.field, tc.value, err, tc.want)
			}
		})
	}
	// A single row whose weights are not finite.
	one := map[string]any{}
	for k, v := range fields {
		one[k] = v
	}
	one["rows"] = base64.StdEncoding.EncodeToString([]byte{5, 0, 0, 0})
	one["weights"] = base64.StdEncoding.EncodeToString(nan)
	data, _ = json.Marshal(one)
	var got classifier.Model
	if err := json.Unmarshal(data, &got); err == nil || !strings.Contains(err.Error(), "finite") {
		t.Errorf("NaN weights: err %v", err)
	}
}

// The model decides what the rules leave open, and leaves alone what they are sure of.
func TestModelDecidesOnlyWhereTheRulesAreNotSure(t *testing.T) {
	base, m, _ := trained(t)
	c := base.WithModel(m)
	learned := 0
	for _, it := range readLabelled(t, "../rules/testdata/holdout-2.jsonl") {
		rulesOnly, both := base.Classify(&it.Event), c.Classify(&it.Event)
		if rulesOnly.Confidence >= 0.95 && rulesOnly.Category != failure.Unknown {
			if both.Category != rulesOnly.Category || both.Retryable != rulesOnly.Retryable || both.Learned {
				t.Errorf("%s: rules sure of %s/%v (%.2f), with the model %s/%v", it.Event.ID,
					rulesOnly.Category, rulesOnly.Retryable, rulesOnly.Confidence, both.Category, both.Retryable)
			}
			continue
		}
		if !containsPrefix(both.Evidence, "the learned model says") {
			t.Errorf("%s: rules not sure (%.2f) but the evidence %q does not say what the model said", it.Event.ID, rulesOnly.Confidence, both.Evidence)
		}
		if both.Learned != (both.Category != rulesOnly.Category || both.Confidence != rulesOnly.Confidence) && both.Category != failure.Unknown {
			t.Errorf("%s: learned %v, but rules said %s (%.2f) and the result is %s (%.2f)", it.Event.ID, both.Learned,
				rulesOnly.Category, rulesOnly.Confidence, both.Category, both.Confidence)
		}
		if both.Learned && both.Category != rulesOnly.Category {
			learned++
		}
		if both.Retryable && !both.Category.DefaultRetryable() {
			t.Errorf("%s: retryable %s", it.Event.ID, both.Category)
		}
	}
	if learned == 0 {
		t.Errorf("the model changed no category the rules were unsure of")
	}
}

func containsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestTrainRefusesBadInput(t *testing.T) {
	base, _, _ := trained(t)
	items := readLabelled(t, "../rules/testdata/dev.jsonl")
	if _, _, err := classifier.Train(base, items[:3], classifier.TrainOptions{}); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Errorf("3 examples: err %v", err)
	}
	bad := append([]classifier.Labelled(nil), items[:20]...)
	bad[7].Expected.Category = "sad"
	if _, _, err := classifier.Train(base, bad, classifier.TrainOptions{}); err == nil || !strings.Contains(err.Error(), "example 7") {
		t.Errorf("a bad category: err %v", err)
	}
	if _, _, err := classifier.Train(base, items, classifier.TrainOptions{Buckets: 1000}); err == nil || !strings.Contains(err.Error(), "buckets") {
		t.Errorf("buckets 1000: err %v", err)
	}
}

// The embedded model loads and classifies every labelled event to a valid result.
func TestEmbeddedModelLoads(t *testing.T) {
	c, err := classifier.LoadDefault(classifier.Sources{}, classifier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Model() == nil || c.Model().Info().Examples < 1000 {
		t.Fatalf("embedded model %+v: want one trained on the labelled corpus", c.Model())
	}
	for _, it := range readLabelled(t, "../rules/testdata/holdout-3.jsonl") {
		got := c.Classify(&it.Event)
		if !got.Category.Valid() || got.Confidence < 0 || got.Confidence > 1 {
			t.Fatalf("%s: %+v", it.Event.ID, got)
		}
	}
}

// FuzzModelArtifact feeds arbitrary artifacts to the decoder: an error, or a model
// that classifies without panicking.
func FuzzModelArtifact(f *testing.F) {
	base, err := classifier.LoadDefault(classifier.Sources{ModelFile: classifier.NoModel}, classifier.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(`{"kind":"autofix-failure-classifier","version":1,"classes":["oom_memory","timeout"],"buckets":4,"temperature":1,"retryA":1,"retryB":0,"retryThreshold":0.5,"minConfidence":0.5,"bias":[0,0,0],"rows":"AQAAAA==","weights":"AACAPwAAgL8AAAAA"}`)
	f.Add(`{"kind":"autofix-failure-classifier","version":1}`)
	ev := &failure.Event{ID: "e", Job: failure.Job{Name: "j"}, Failure: failure.Signals{Reason: "Error", ExitCode: 1,
		LogTail: "Traceback\nValueError: x\nCUDA out of memory"}}
	f.Fuzz(func(t *testing.T, data string) {
		var m classifier.Model
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			return
		}
		got := base.WithModel(&m).Classify(ev)
		if !got.Category.Valid() || !(got.Confidence >= 0 && got.Confidence <= 1) {
			t.Fatalf("Classify = %+v", got)
		}
	})
}

// A line its two labellers disagreed on counts for less with AmbiguousWeight: where
// as many disagreed lines as agreed ones give the same text another label, the model
// follows the agreed ones, and it records the weight it was trained with.
func TestTrainAmbiguousWeight(t *testing.T) {
	base, _, _ := trained(t)
	items, probe := disagreedItems(failure.NetworkTransient)
	confidence := func(w float64) (failure.Classification, *classifier.Model) {
		m, _, err := classifier.Train(base, items, classifier.TrainOptions{MaxIterations: 100, Folds: 3, AmbiguousWeight: w})
		if err != nil {
			t.Fatal(err)
		}
		return base.WithModel(m).Classify(&probe), m
	}
	even, _ := confidence(0)
	agreed, m := confidence(0.05)
	if agreed.Category != failure.DataError || agreed.Retryable {
		t.Errorf("ambiguous lines weighed 0.05: %s/%v, want the agreed lines' data_error/false", agreed.Category, agreed.Retryable)
	}
	if even.Category == failure.DataError && even.Confidence >= agreed.Confidence {
		t.Errorf("all lines alike: data_error at %.2f, not less sure than with the disagreed lines weighed down (%.2f)", even.Confidence, agreed.Confidence)
	}
	if got := m.Info().Options.AmbiguousWeight; got != 0.05 {
		t.Errorf("the model records ambiguousWeight %v, want 0.05", got)
	}
	if _, _, err := classifier.Train(base, items, classifier.TrainOptions{AmbiguousWeight: 1.5}); err == nil || !strings.Contains(err.Error(), "ambiguousWeight") {
		t.Errorf("ambiguousWeight 1.5: err %v, want one naming the option", err)
	}
}

// disagreedItems is a labelled set where 24 agreed lines call a text data_error and
// 24 disagreed lines call the same text network_transient, with 24 agreed lines of
// another text labelled third; and an event of that text to classify.
func disagreedItems(third failure.Category) ([]classifier.Labelled, failure.Event) {
	var items []classifier.Labelled
	add := func(i int, text string, cat failure.Category, ambiguous bool) {
		items = append(items, classifier.Labelled{
			Event: failure.Event{ID: fmt.Sprintf("e%d", i), Job: failure.Job{Name: "crawl", Kind: failure.Batch},
				Failure: failure.Signals{Reason: "Error", ExitCode: 1, LogTail: text}},
			Expected: classifier.Label{Category: cat, Retryable: cat.DefaultRetryable()}, Source: fmt.Sprintf("thread-%d", i),
			Ambiguous: ambiguous,
		})
	}
	for i := range 24 {
		add(i, fmt.Sprintf("stage %d: zorblax frame rejected", i), failure.DataError, false)
		add(100+i, fmt.Sprintf("stage %d: zorblax frame rejected", i), failure.NetworkTransient, true)
		add(200+i, fmt.Sprintf("stage %d: quuxle handshake refused", i), third, false)
	}
	probe := failure.Event{ID: "probe", Job: failure.Job{Name: "crawl", Kind: failure.Batch},
		Failure: failure.Signals{Reason: "Error", ExitCode: 1, LogTail: "stage 7: zorblax frame rejected"}}
	return items, probe
}

package models

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

// memoryRetries are n retries of CPU jobs that ran out of memory, each of its own
// template with three successful runs whose peaks tell the need; a retry succeeds
// when its memory covers the need. No retry has a GPU or a deadline. Those for which
// fixed(i) holds are given twice the need, and succeed.
func memoryRetries(n int, fixed func(i int) bool) []Example {
	rng := rand.New(rand.NewPCG(5, 11))
	const gib = 1 << 30
	out := make([]Example, n)
	for i := range out {
		tmpl := fmt.Sprintf("etl-%d", i)
		need := float64(8+rng.IntN(56)) * gib
		res := func(mem float64) failure.Resources {
			return failure.Resources{CPUMillis: 4000, MemoryBytes: int64(mem)}
		}
		var history []failure.Outcome
		for k := range 3 {
			peak := need * (0.97 + 0.06*rng.Float64())
			history = append(history, failure.Outcome{Template: tmpl, Attempt: 1, Resources: res(need * 1.4), Succeeded: true,
				DurationSeconds: 3000 + 100*float64(k), Usage: failure.Usage{PeakMemoryBytes: int64(peak)}})
		}
		failed := res(need * 0.9)
		ev := failure.Event{ID: tmpl + "-oom", Job: failure.Job{Namespace: "data", Name: tmpl + "-7", Template: tmpl, Attempt: 1,
			Kind: failure.Batch, Resources: failed}, Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 1200}}
		mem := need * (0.8 + 0.8*rng.Float64())
		if fixed(i) {
			mem = 2 * need
		}
		ok := mem >= need
		ex := Example{Event: ev, Category: failure.OOMMemory, History: history,
			Option:  failure.Option{Resources: res(mem)},
			Outcome: failure.Outcome{Template: tmpl, Attempt: 2, Resources: res(mem), Succeeded: ok, DurationSeconds: 3100}}
		if !ok {
			ex.Outcome.DurationSeconds, ex.Result = 900, failure.OOMMemory
		}
		out[i] = ex
	}
	return out
}

// TestTrainHeldOut: with HeldOut, the examples it names are the evaluation's and
// only they are; the rest train.
func TestTrainHeldOut(t *testing.T) {
	const n = 400
	late := func(i int) bool { return i >= 320 }
	// The late retries all succeed: the evaluation counts as many successes as
	// retries only if it scores exactly those.
	examples := memoryRetries(n, late)
	cat := failure.DefaultCatalogue()
	prior, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Train(examples, &cat, TrainOptions{Name: "split", HeldOut: late, Prior: prior})
	if err != nil {
		t.Fatalf("Train = %v", err)
	}
	e := m.Evaluation
	if e.TrainExamples != 320 || e.TestExamples != 80 {
		t.Errorf("trained on %d and evaluated on %d, want 320 and 80", e.TrainExamples, e.TestExamples)
	}
	if e.Success.N != 80 || e.Success.Positives != 80 {
		t.Errorf("P(success) scored on %d retries with %d successes, want the 80 held out, all successes", e.Success.N, e.Success.Positives)
	}
	if _, err := Train(examples, &cat, TrainOptions{HeldOut: func(int) bool { return false }, Prior: prior}); err == nil {
		t.Error("Train with nothing held out = nil error, want one")
	}
}

// TestTrainPrior: a model without the examples to fit it (no GPU retries, no
// deadlines) is kept from the prior, and said to be; without a prior, training
// fails for want of them, as before.
func TestTrainPrior(t *testing.T) {
	examples := memoryRetries(300, func(int) bool { return false })
	cat := failure.DefaultCatalogue()
	if _, err := Train(examples, &cat, TrainOptions{}); err == nil || !strings.Contains(err.Error(), "gpu model") {
		t.Errorf("Train without GPU retries and no prior = %v, want the gpu model's error", err)
	}
	prior, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Train(examples, &cat, TrainOptions{Prior: prior})
	if err != nil {
		t.Fatalf("Train with a prior = %v", err)
	}
	if want := []string{"disk", "gpu", "deadline"}; !reflect.DeepEqual(m.Evaluation.Kept, want) {
		t.Errorf("kept %v, want %v", m.Evaluation.Kept, want)
	}
	for name, got := range map[string][2][]float64{
		"disk": {m.Disk.Weights, prior.Disk.Weights}, "gpu": {m.GPU.Weights, prior.GPU.Weights},
		"deadline": {m.Deadline.Weights, prior.Deadline.Weights},
	} {
		if !slices.Equal(got[0], got[1]) {
			t.Errorf("%s weights %v, want the prior's %v", name, got[0], got[1])
		}
	}
	if slices.Equal(m.Memory.Weights, prior.Memory.Weights) || slices.Equal(m.Runtime.Weights, prior.Runtime.Weights) {
		t.Error("the memory and runtime models, which have examples, were not fitted")
	}
	m.GPU.Weights[0]++
	if m.GPU.Weights[0] == prior.GPU.Weights[0] {
		t.Error("a kept model shares its weights with the prior")
	}
	// Too few examples, or one label only, is as good as none.
	few, err := Train(memoryRetries(300, func(int) bool { return true }), &cat, TrainOptions{Prior: prior, MinExamples: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(few.Evaluation.Kept, "memory") {
		t.Errorf("with successes only, kept %v, want memory among them", few.Evaluation.Kept)
	}
	var b bytes.Buffer
	m.Evaluation.Write(&b)
	if !strings.Contains(b.String(), "kept from the prior: disk, gpu, deadline") {
		t.Errorf("the report does not say which models were kept:\n%s", b.String())
	}
}

// TestEvaluationWriteWindow: the report of a time-ordered split says when the
// examples were received, and how many were simulated.
func TestEvaluationWriteWindow(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC) }
	e := &Evaluation{TrainExamples: 1080, TestExamples: 20,
		Window: &Window{TrainFrom: day(1), TrainTo: day(8), TestFrom: day(9), TestTo: day(10), Simulated: 1000}}
	var b bytes.Buffer
	e.Write(&b)
	want := "trained on 80 retries received 2026-03-01T00:00:00Z to 2026-03-08T00:00:00Z and 1000 simulated,\n" +
		"evaluated on the 20 received after them, 2026-03-09T00:00:00Z to 2026-03-10T00:00:00Z\n"
	if !strings.HasPrefix(b.String(), want) {
		t.Errorf("report starts\n%s\nwant\n%s", b.String(), want)
	}
}

// TestPSuccessScoresAsTheEvaluation: the models' PSuccess of the held-out examples,
// calibrated, is the evaluation's P(success) calibration — what the registry's gates
// compare two versions with is what training reports.
func TestPSuccessScoresAsTheEvaluation(t *testing.T) {
	examples := memoryRetries(400, func(i int) bool { return i%3 == 0 })
	late := func(i int) bool { return i >= 300 }
	cat := failure.DefaultCatalogue()
	prior, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Train(examples, &cat, TrainOptions{Name: "t", HeldOut: late, Prior: prior})
	if err != nil {
		t.Fatal(err)
	}
	var p, y []float64
	s := &Scratch{}
	for i := 300; i < len(examples); i++ {
		p = append(p, m.PSuccess(&examples[i], &cat, s))
		y = append(y, map[bool]float64{true: 1}[examples[i].Outcome.Succeeded])
	}
	if got := Calibrate(p, y); !reflect.DeepEqual(got, m.Evaluation.Success) {
		t.Errorf("Calibrate(PSuccess of the held-out examples) =\n%+v\nwant the evaluation's\n%+v", got, m.Evaluation.Success)
	}
}

func TestECE(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Calibration
		want float64
	}{
		{"no examples", Calibration{}, 0},
		{"calibrated", Calibration{Reliability: []Bin{{Count: 10, Predicted: 0.2, Observed: 0.2}, {Count: 30, Predicted: 0.9, Observed: 0.9}}}, 0},
		// (10 x 0.1 + 30 x 0.2) / 40
		{"off", Calibration{Reliability: []Bin{{Count: 10, Predicted: 0.2, Observed: 0.3}, {Count: 30, Predicted: 0.9, Observed: 0.7}}}, 0.175},
	} {
		if got := tc.c.ECE(); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s: ECE() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBinEdges(t *testing.T) {
	for _, tc := range []struct{ p, lo, hi float64 }{
		{0, 0, 0.1}, {0.05, 0, 0.1}, {0.1, 0.1, 0.2}, {0.93, 0.9, 0.95}, {0.97, 0.95, 0.99}, {0.995, 0.99, 1}, {1, 0.99, 1},
	} {
		if lo, hi := BinEdges(tc.p); lo != tc.lo || hi != tc.hi {
			t.Errorf("BinEdges(%v) = %v, %v; want %v, %v", tc.p, lo, hi, tc.lo, tc.hi)
		}
	}
}

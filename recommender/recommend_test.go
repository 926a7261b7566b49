package recommender_test

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/optimizer"
	"github.com/autofix/autofix/recommender"
	"github.com/autofix/autofix/rules"
)

func newRecommender(t testing.TB) *recommender.Recommender {
	t.Helper()
	return newRecommenderWith(t, nil)
}

// newRecommenderWith lets set change the options before the recommender is made.
func newRecommenderWith(t testing.TB, set func(*recommender.Options)) *recommender.Recommender {
	t.Helper()
	l, err := loadShared()
	if err != nil {
		t.Fatal(err)
	}
	opts := recommender.Options{Catalogue: failure.DefaultCatalogue(), MaxMemoryBytes: 1 << 40, MaxCPUMillis: 96000, MaxGPUs: 8}
	if set != nil {
		set(&opts)
	}
	return recommender.New(classifier.New(l.rules, classifier.Options{}), l.models, opts)
}

// loadShared loads the rules and the models once for all the tests: compiling the
// rules takes seconds under the race detector, and once per recommender it made
// this package take three minutes on a loaded 2-core machine, a good part of go
// test's 10-minute limit. Both are only read once loaded, as serve shares them.
var loadShared = sync.OnceValues(func() (loaded, error) {
	rs, err := classifier.Load(rules.FS)
	if err != nil {
		return loaded{}, err
	}
	m, err := models.Default()
	return loaded{rs, m}, err
})

type loaded struct {
	rules  *classifier.RuleSet
	models *models.Models
}

func oomEvent() *failure.Event {
	return &failure.Event{
		ID: "e1", Job: failure.Job{Name: "etl-7", Template: "etl", Attempt: 1, Kind: failure.Batch,
			Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 16 << 30}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 900, Node: "n1",
			Usage: failure.Usage{PeakMemoryBytes: 16 << 30}},
	}
}

func succeeded(gib float64) failure.Outcome {
	return failure.Outcome{Template: "etl", Succeeded: true, DurationSeconds: 1800,
		Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 24 << 30},
		Usage:     failure.Usage{PeakMemoryBytes: int64(gib * (1 << 30))}}
}

func TestMemoryOOM(t *testing.T) {
	r := newRecommender(t)
	blind := r.Recommend(oomEvent(), nil)
	if !blind.Retry || blind.Chosen != 0 || blind.Classification.Category != failure.OOMMemory {
		t.Fatalf("Recommend = %+v", blind)
	}
	o := blind.Options[0]
	if o.Resources.MemoryBytes <= 16<<30 || o.PFix < 0.95 || !o.Pareto {
		t.Errorf("chosen option %+v: want more memory, PFix >= 0.95, on the front", o)
	}
	if !strings.Contains(blind.Explanation, "killed at its 16Gi memory limit") || !strings.Contains(blind.Explanation, "memory 16Gi -> ") {
		t.Errorf("explanation %q", blind.Explanation)
	}
	for i := 1; i < len(blind.Options); i++ {
		if blind.Options[i].PFix >= 0.95 && blind.Options[i].ExpectedCost < o.ExpectedCost {
			t.Errorf("option %d is cheaper and above the target: %+v", i, blind.Options[i])
		}
	}

	// With the job's history (runs peaking at ~18 GiB, the newest at 18.5), a small
	// raise is enough and cheaper than the blind guess.
	history := []failure.Outcome{succeeded(17.8), succeeded(18.1), succeeded(18), succeeded(18.5)}
	informed := r.Recommend(oomEvent(), history)
	m := informed.Options[0].Resources.MemoryBytes
	if m < 18<<30 || m > 24<<30 || m >= o.Resources.MemoryBytes {
		t.Errorf("with history the chosen memory is %s, without %s; want 18-24Gi and less than without",
			failure.FormatBytes(m), failure.FormatBytes(o.Resources.MemoryBytes))
	}
}

func TestNotRetryable(t *testing.T) {
	r := newRecommender(t)
	ev := oomEvent()
	ev.Failure = failure.Signals{Reason: "Error", ExitCode: 1, LogTail: "Traceback (most recent call last):\nModuleNotFoundError: No module named 'flash_attn'"}
	rec := r.Recommend(ev, nil)
	if rec.Retry || rec.Chosen != -1 || len(rec.Options) != 0 || rec.Classification.Category != failure.UserCode {
		t.Errorf("Recommend = %+v, want no retry of a code bug", rec)
	}
	if !strings.Contains(rec.Explanation, "not retried") {
		t.Errorf("explanation %q does not say it is not retried", rec.Explanation)
	}
}

func TestHardwareAvoidsTheNode(t *testing.T) {
	r := newRecommender(t)
	ev := oomEvent()
	ev.Job.Resources.GPU, ev.Job.Resources.GPUType = 1, "nvidia-a100-80gb"
	ev.Failure = failure.Signals{Reason: "Error", ExitCode: 1, Node: "gpu-7", LogTail: "NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus."}
	rec := r.Recommend(ev, nil)
	o, ok := rec.ChosenOption()
	if !ok || !slices.Equal(o.AvoidNodes, []string{"gpu-7"}) || rec.Classification.Action != failure.Reschedule {
		t.Errorf("Recommend = %+v", rec)
	}
}

func TestTimeoutExtendsTheDeadline(t *testing.T) {
	r := newRecommender(t)
	ev := oomEvent()
	ev.Failure = failure.Signals{Reason: "DeadlineExceeded", Message: "Job was active longer than specified deadline", DurationSeconds: 3600}
	history := []failure.Outcome{succeeded(10), succeeded(10), succeeded(10)}
	for i := range history {
		history[i].Resources = ev.Job.Resources
		history[i].DurationSeconds = 3300
	}
	rec := r.Recommend(ev, history)
	o, ok := rec.ChosenOption()
	if !ok || o.DeadlineSeconds <= 3600 {
		t.Errorf("Recommend = %+v, want a longer deadline", rec)
	}
}

// learnedClassifier answers as the classifier does when its model decides.
type learnedClassifier struct{ cl failure.Classification }

func (l learnedClassifier) Classify(*failure.Event) failure.Classification { return l.cl }

// A category the learned model chose is acted on like the rules', and the
// explanation quotes the evidence rather than the model's own note.
func TestLearnedClassification(t *testing.T) {
	l, err := loadShared()
	if err != nil {
		t.Fatal(err)
	}
	ev := oomEvent()
	ev.Failure = failure.Signals{Reason: "Error", ExitCode: 1, LogTail: "the storage gateway hiccuped"}
	c := learnedClassifier{failure.Classification{Category: failure.NetworkTransient, Retryable: true, Action: failure.RetryBackoff,
		Confidence: 0.83, Rules: []string{}, Learned: true,
		Evidence: []string{"the learned model says network_transient (p=0.83; P(a retry fixes it)=0.91)", "the storage gateway hiccuped"}}}
	rec := recommender.New(c, l.models, recommender.Options{Catalogue: failure.DefaultCatalogue(), MaxMemoryBytes: 1 << 40, MaxCPUMillis: 96000, MaxGPUs: 8}).Recommend(ev, nil)
	if !rec.Retry || !strings.Contains(rec.Explanation, "from the learned model") || !strings.Contains(rec.Explanation, "storage gateway hiccuped") ||
		strings.Contains(rec.Explanation, "P(a retry") {
		t.Errorf("Recommend = retry %v, %q: want a retry explained by the model and the quoted evidence", rec.Retry, rec.Explanation)
	}
}

// BenchmarkRecommendGPU is a full recommendation for a GPU OOM whose memory is also
// at risk: classification, context, and the optimisation over every GPU model and
// count, tunable setting and memory step (thousands of candidates).
func BenchmarkRecommendGPU(b *testing.B) {
	r := newRecommender(b)
	ev, history := gpuEvent()
	rec := r.Recommend(ev, history)
	if !rec.Retry {
		b.Fatalf("no retry: %s", rec.Explanation)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Recommend(ev, history)
	}
	b.ReportMetric(float64(rec.Considered), "candidates")
}

// BenchmarkRecommendMemory is the common case: an OOM-killed CPU job with a history of
// twelve runs; the space is the memory steps.
func BenchmarkRecommendMemory(b *testing.B) {
	r := newRecommender(b)
	var history []failure.Outcome
	for i := range 12 {
		history = append(history, succeeded(17+float64(i)/4))
	}
	rec := r.Recommend(oomEvent(), history)
	if !rec.Retry {
		b.Fatalf("no retry: %s", rec.Explanation)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Recommend(oomEvent(), history)
	}
	b.ReportMetric(float64(rec.Considered), "candidates")
}

// gpuEvent is a GPU OOM of a 2-GPU fine-tuning job that declares its tunables, with
// eight successful runs whose host memory peaked close to the limit.
func gpuEvent() (*failure.Event, []failure.Outcome) {
	ev := &failure.Event{
		ID: "g", Job: failure.Job{Name: "ft-3", Template: "ft", Attempt: 1, Kind: failure.Training,
			Resources: failure.Resources{CPUMillis: 16000, MemoryBytes: 120 << 30, GPU: 2, GPUType: "nvidia-a100-40gb"},
			Params:    map[string]string{"mb": "32", "acc": "2", "prec": "fp32", "ckpt": "false"},
			Tunables: map[string]failure.Tunable{
				"mb": {Role: failure.RoleMicroBatch, Min: 1, Max: 512}, "acc": {Role: failure.RoleGradAccum, Min: 1, Max: 512},
				"prec": {Role: failure.RolePrecision, Values: []string{"fp32", "bf16"}}, "ckpt": {Role: failure.RoleCheckpointing, Values: []string{"false", "true"}},
			}},
		Failure: failure.Signals{Reason: "Error", ExitCode: 1, DurationSeconds: 40,
			LogTail: strings.Repeat("step 10 loss 2.1\n", 200) + "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."},
	}
	var history []failure.Outcome
	for range 8 {
		history = append(history, failure.Outcome{Template: "ft", Succeeded: true, DurationSeconds: 3600,
			Resources: ev.Job.Resources, Params: ev.Job.Params, Usage: failure.Usage{PeakMemoryBytes: 118 << 30, PeakGPUMemoryBytes: 38 << 30}})
	}
	return ev, history
}

func TestQuotaLimitsTheOptions(t *testing.T) {
	ev, history := gpuEvent()
	ev.Job.Namespace = "team-a"
	unlimited := newRecommender(t).Recommend(ev, history)
	free, ok := unlimited.ChosenOption()
	if !ok {
		t.Fatal("no retry without a quota")
	}
	// A quota just below the unconstrained choice's GPUs or memory binds.
	limit := failure.Resources{GPU: free.Resources.GPU - 1, MemoryBytes: free.Resources.MemoryBytes - 1}
	if limit.GPU < ev.Job.Resources.GPU {
		limit.GPU = 0 // the count is not what grew: limit the memory only
	}
	limited := newRecommenderWith(t, func(o *recommender.Options) {
		o.Quotas = map[string]failure.Resources{"team-a": limit}
	})
	rec := limited.Recommend(ev, history)
	chosen, ok := rec.ChosenOption()
	if !ok {
		t.Fatalf("no retry within the quota: %s", rec.Explanation)
	}
	for _, o := range rec.Options {
		if !(optimizer.Quota{Limit: limit}).Feasible(&o) {
			t.Errorf("option %+v exceeds team-a's quota %+v", o.Resources, limit)
		}
	}
	if chosen.Resources == free.Resources || chosen.ExpectedCost < free.ExpectedCost {
		t.Errorf("with the quota %+v (expected cost %v), without %+v (%v): want another, dearer choice",
			chosen.Resources, chosen.ExpectedCost, free.Resources, free.ExpectedCost)
	}
	// Another namespace is not limited by team-a's quota.
	ev.Job.Namespace = "team-b"
	b := limited.Recommend(ev, history)
	if other, _ := b.ChosenOption(); other.Resources != free.Resources {
		t.Errorf("team-b got %+v, want the unconstrained %+v", other.Resources, free.Resources)
	}

	// A quota below what the job needs leaves nothing to retry with, and says so.
	oom := oomEvent()
	oom.Job.Namespace = "tiny"
	none := newRecommenderWith(t, func(o *recommender.Options) {
		o.Quotas = map[string]failure.Resources{"tiny": {MemoryBytes: 16 << 30}}
	}).Recommend(oom, nil)
	if none.Retry || !strings.Contains(none.Explanation, "quota") {
		t.Errorf("with no headroom: retry %v, %q; want no retry, naming the quota", none.Retry, none.Explanation)
	}
}

func TestLargeSpacesAreSearched(t *testing.T) {
	ev, history := gpuEvent()
	all := newRecommender(t).Recommend(ev, history)
	searched := newRecommenderWith(t, func(o *recommender.Options) {
		o.Search = optimizer.Search{MaxExhaustive: 1000, Budget: 800}
	}).Recommend(ev, history)
	if all.Considered != 2400 || searched.Considered > 800 || !strings.Contains(searched.Explanation, "configurations searched (of 2400)") {
		t.Fatalf("enumerated %d, searched %d: %q", all.Considered, searched.Considered, searched.Explanation)
	}
	a, _ := all.ChosenOption()
	b, ok := searched.ChosenOption()
	if !ok || b.PFix < 0.95 || b.ExpectedCost > 1.05*a.ExpectedCost {
		t.Errorf("searching a third of the space chose PFix %.3f at $%.2f; enumerating, %.3f at $%.2f", b.PFix, b.ExpectedCost, a.PFix, a.ExpectedCost)
	}
}

func TestDiskFullGrowsTheEphemeralStorage(t *testing.T) {
	r := newRecommender(t)
	ev := oomEvent()
	ev.Job.Resources.EphemeralStorageBytes = 20 << 30
	ev.Failure = failure.Signals{Reason: "Evicted", ExitCode: 137, Node: "n3", DurationSeconds: 1200,
		Message: "Pod ephemeral local storage usage exceeds the total limit of containers 20Gi. ",
		Usage:   failure.Usage{PeakEphemeralStorageBytes: 20 << 30}}
	rec := r.Recommend(ev, nil)
	o, ok := rec.ChosenOption()
	if !ok || rec.Classification.Category != failure.DiskFull {
		t.Fatalf("Recommend = %+v", rec)
	}
	if o.Resources.EphemeralStorageBytes <= 20<<30 || o.Resources.MemoryBytes != ev.Job.Resources.MemoryBytes || o.PFix < 0.95 ||
		!strings.Contains(strings.Join(o.Changes, ";"), "ephemeral storage 20Gi -> ") || !strings.Contains(rec.Explanation, "evicted at its 20Gi") {
		t.Errorf("chosen %+v, explanation %q: want more ephemeral storage, the memory kept, PFix >= 0.95", o, rec.Explanation)
	}
	// With history the need is known: the new limit covers it without going wild.
	var history []failure.Outcome
	for range 6 {
		h := succeeded(10)
		h.Resources.EphemeralStorageBytes = 40 << 30
		h.Usage.PeakEphemeralStorageBytes = 26 << 30
		history = append(history, h)
	}
	known, _ := r.Recommend(ev, history).ChosenOption()
	if d := known.Resources.EphemeralStorageBytes; d < 26<<30 || d > 40<<30 {
		t.Errorf("runs used 26Gi: chose %s", failure.FormatBytes(d))
	}

	// Without a limit of its own the node's disk filled: another node.
	ev.Job.Resources.EphemeralStorageBytes = 0
	ev.Failure.Message = "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 4Gi. "
	node, ok := r.Recommend(ev, nil).ChosenOption()
	if !ok || !slices.Equal(node.AvoidNodes, []string{"n3"}) {
		t.Errorf("node disk full: chosen %+v, want to avoid n3", node)
	}
}

func TestSharedMemoryIsLeftToAPerson(t *testing.T) {
	ev := oomEvent()
	ev.Failure = failure.Signals{Reason: "Error", ExitCode: 1, LogTail: "ERROR: Unexpected bus error encountered in worker. " +
		"This might be caused by insufficient shared memory (shm).\nRuntimeError: DataLoader worker (pid 41) is killed by signal: Bus error."}
	rec := newRecommender(t).Recommend(ev, nil)
	if rec.Classification.Action != failure.IncreaseShm || rec.Retry || !strings.Contains(rec.Explanation, "/dev/shm") {
		t.Errorf("Recommend = action %s, retry %v, %q: want no blind retry and the fix named", rec.Classification.Action, rec.Retry, rec.Explanation)
	}
}

func TestRuntimeObjectiveAndWeights(t *testing.T) {
	ev, history := gpuEvent()
	onFront := func(rec failure.Recommendation) (fastest float64) {
		fastest = math.Inf(1)
		for _, o := range rec.Options {
			if o.Pareto {
				fastest = math.Min(fastest, o.RuntimeSeconds)
			}
		}
		return fastest
	}
	plain := newRecommender(t).Recommend(ev, history)
	timed := newRecommenderWith(t, func(o *recommender.Options) { o.Runtime, o.MaxOptions = true, 200 }).Recommend(ev, history)
	if !(onFront(timed) < onFront(plain)) {
		t.Errorf("with runtime as an objective the front's fastest option takes %.0f s, without %.0f s; want faster",
			onFront(timed), onFront(plain))
	}
	// Weighting time heavily picks a faster option than the cost target does.
	fast := newRecommenderWith(t, func(o *recommender.Options) { o.Runtime, o.Weights = true, []float64{1, 0.1, 5} }).Recommend(ev, history)
	a, _ := plain.ChosenOption()
	b, ok := fast.ChosenOption()
	if !ok || b.RuntimeSeconds >= a.RuntimeSeconds || b.ExpectedCost <= a.ExpectedCost {
		t.Errorf("time-weighted choice: %.0f s at $%.2f; the target's: %.0f s at $%.2f; want faster and dearer",
			b.RuntimeSeconds, b.ExpectedCost, a.RuntimeSeconds, a.ExpectedCost)
	}
}

// TestExtremeInputsStayEncodable feeds values the decoder refuses (an event built in
// code, or one recorded under older limits) and checks that the recommendation is
// still finite, so that it can be recorded: +Inf once failed json.Marshal and, with
// it, the whole batch the event came in.
func TestExtremeInputsStayEncodable(t *testing.T) {
	r := newRecommender(t)
	timeout := func(d float64) *failure.Event {
		return &failure.Event{ID: "t", Job: failure.Job{Name: "etl-1", Template: "etl", Attempt: 1, Kind: failure.Batch,
			Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 16 << 30}},
			Failure: failure.Signals{Reason: "DeadlineExceeded", Message: "Job was active longer than specified deadline", DurationSeconds: d}}
	}
	huge := oomEvent()
	huge.Job.Resources.MemoryBytes, huge.Failure.Usage.PeakMemoryBytes = math.MaxInt64/2, math.MaxInt64/2
	history := []failure.Outcome{{Template: "etl", Succeeded: true, DurationSeconds: math.Inf(1), Cost: math.NaN()}}
	for _, tt := range []struct {
		name    string
		ev      *failure.Event
		history []failure.Outcome
	}{
		{"duration 1e308", timeout(1e308), nil},
		{"duration max float", timeout(math.MaxFloat64), nil},
		{"memory near MaxInt64", huge, nil},
		{"infinite history", oomEvent(), history},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := r.Recommend(tt.ev, tt.history)
			if _, err := json.Marshal(rec); err != nil {
				t.Fatalf("json.Marshal(Recommend) = %v; the recommendation holds a number JSON cannot encode: %+v", err, rec)
			}
			for i := range rec.Options {
				if err := rec.Options[i].Check(); err != nil {
					t.Errorf("option %d: %v", i, err)
				}
			}
		})
	}
}

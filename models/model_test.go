package models

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
)

func TestFitLogisticRecoversWeights(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	want := []float64{-1, 2, -0.5}
	var xs [][]float64
	var ys []float64
	for range 20000 {
		x := []float64{1, rng.NormFloat64(), rng.NormFloat64()}
		y := 0.0
		if rng.Float64() < sigmoid(want[0]+want[1]*x[1]+want[2]*x[2]) {
			y = 1
		}
		xs, ys = append(xs, x), append(ys, y)
	}
	m, err := fitLogistic(xs, ys, 1e-6)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Abs(m.Weights[i]-want[i]) > 0.1 {
			t.Errorf("weight %d = %.3f, want %.3f ± 0.1", i, m.Weights[i], want[i])
		}
	}
	c := calibrate(predictAll(m, xs), ys)
	if c.AUC < 0.8 || c.Brier > 0.2 {
		t.Errorf("calibration on its own data: AUC %.3f, Brier %.3f", c.AUC, c.Brier)
	}
	for _, b := range c.Reliability {
		if b.Count > 500 && math.Abs(b.Predicted-b.Observed) > 0.05 {
			t.Errorf("bin [%.2f,%.2f): predicted %.3f, observed %.3f: not calibrated", b.Lo, b.Hi, b.Predicted, b.Observed)
		}
	}
}

func predictAll(m *Logistic, xs [][]float64) []float64 {
	var p []float64
	for _, x := range xs {
		p = append(p, m.Predict(x))
	}
	return p
}

func TestCalibrate(t *testing.T) {
	c := calibrate([]float64{0.1, 0.2, 0.8, 0.9}, []float64{0, 0, 1, 1})
	if c.AUC != 1 || c.Positives != 2 || math.Abs(c.Brier-0.025) > 1e-12 {
		t.Errorf("calibrate = %+v, want AUC 1, 2 positives, Brier 0.025", c)
	}
	c = calibrate([]float64{0.9, 0.8, 0.2, 0.1}, []float64{0, 0, 1, 1})
	if c.AUC != 0 {
		t.Errorf("AUC of reversed scores = %v, want 0", c.AUC)
	}
}

func TestFitLinear(t *testing.T) {
	var xs [][]float64
	var ys []float64
	for i := range 50 {
		x := []float64{1, float64(i), 0}
		xs, ys = append(xs, x), append(ys, 3+0.5*float64(i))
	}
	l, err := fitLinear(xs, ys, 1e-9)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(l.Weights[0]-3) > 1e-3 || math.Abs(l.Weights[1]-0.5) > 1e-4 || l.Weights[2] != 0 {
		t.Errorf("weights = %v, want [3 0.5 0] (a constant feature is pinned to 0)", l.Weights)
	}
}

func TestLoadRejectsBadArtifacts(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatalf("the default models do not load: %v", err)
	}
	good, err := m.Save()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	c := &Context{Failed: failure.Resources{MemoryBytes: 8 << 30}, MemFloor: 8 << 30, Runtime: 600}
	cat := failure.DefaultCatalogue()
	opt := &failure.Option{Resources: failure.Resources{MemoryBytes: 12 << 30, CPUMillis: 2000}}
	if a, b := m.Predict(c, opt, &cat, nil), back.Predict(c, opt, &cat, nil); a != b {
		t.Errorf("predictions differ after a save and load: %+v %+v", a, b)
	}
	for _, tt := range []struct{ from, to, want string }{
		{`"kind": "autofix-retry-models"`, `"kind": "other"`, `kind "other"`},
		{`"version": 2`, `"version": 9`, "version 9, this autofix reads version 2"},
		{`"memory": {`, `"memoryX": {`, "a model is missing"},
		{`"other": `, `"other": 2, "x": `, "other 2 is not a probability"},
	} {
		bad := strings.Replace(string(good), tt.from, tt.to, 1)
		if bad == string(good) {
			t.Fatalf("%q not in the artifact", tt.from)
		}
		if _, err := Load([]byte(bad)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load with %s = %v, want %q", tt.to, err, tt.want)
		}
	}
	if _, err := Load([]byte("not json")); err == nil {
		t.Error("Load(not json) succeeded")
	}
	huge := *m
	huge.GPU = &Logistic{Weights: slices.Clone(m.GPU.Weights)}
	huge.GPU.Weights[2] = 1e300
	data, err := huge.Save()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(data); err == nil || !strings.Contains(err.Error(), "gpu.weights[2] = 1e+300") {
		t.Errorf("Load with a huge weight = %v, want it named", err)
	}
}

// TestDefaultModelsBehave checks what a user relies on: more memory after an OOM is
// more likely to work, memory known from history is trusted, a bigger GPU after a GPU
// OOM is more likely to work than the same one, and costs follow the price list.
func TestDefaultModelsBehave(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cat := failure.DefaultCatalogue()
	failed := failure.Resources{CPUMillis: 4000, MemoryBytes: 16 << 30}
	noHistory := &Context{Category: failure.OOMMemory, Failed: failed, MemFloor: 16 << 30, Runtime: 3600}
	prev := 0.0
	for _, gib := range []int64{16, 17, 20, 24, 32, 48} {
		p := m.Predict(noHistory, &failure.Option{Resources: withMemory(failed, gib<<30)}, &cat, nil)
		if p.PMemory < prev {
			t.Errorf("PMemory(%d GiB) = %.3f, below %.3f for less memory", gib, p.PMemory, prev)
		}
		prev = p.PMemory
		if gib == 16 && p.PMemory > 0.2 {
			t.Errorf("PMemory at the limit the run was killed at = %.3f, want near 0", p.PMemory)
		}
	}
	known := *noHistory
	known.MemEstimate, known.MemSpread = 18<<30, 0.05
	sure := m.Predict(&known, &failure.Option{Resources: withMemory(failed, 20<<30)}, &cat, nil)
	blind := m.Predict(noHistory, &failure.Option{Resources: withMemory(failed, 20<<30)}, &cat, nil)
	if sure.PMemory <= blind.PMemory || sure.PMemory < 0.9 {
		t.Errorf("20 GiB for a job whose runs peak at 18 GiB: PMemory %.3f (without history %.3f); history should make it likely", sure.PMemory, blind.PMemory)
	}
	if want := cat.Cost(withMemory(failed, 20<<30), sure.RuntimeSeconds); math.Abs(sure.RunCost-want) > 1e-9 {
		t.Errorf("RunCost = %v, want the catalogue's %v", sure.RunCost, want)
	}

	gpu := failure.Resources{CPUMillis: 8000, MemoryBytes: 64 << 30, GPU: 1, GPUType: "nvidia-a100-40gb"}
	gctx := &Context{Category: failure.OOMGPU, Failed: gpu, GPUFloor: 40 << 30, Runtime: 3600, MemEstimate: 30 << 30, MemSpread: 0.05}
	same := m.Predict(gctx, &failure.Option{Resources: gpu}, &cat, nil)
	bigger := gpu
	bigger.GPUType = "nvidia-a100-80gb"
	big := m.Predict(gctx, &failure.Option{Resources: bigger}, &cat, nil)
	if same.PGPU > 0.1 || big.PGPU < 0.8 {
		t.Errorf("after a GPU OOM on 40 GiB: PGPU same GPU %.3f, 80 GiB GPU %.3f; want near 0 and likely", same.PGPU, big.PGPU)
	}
	if big.PFix != big.PGPU {
		t.Errorf("PFix of a GPU OOM = %v, want PGPU %v", big.PFix, big.PGPU)
	}
}

func TestDiskModelBehaves(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cat := failure.DefaultCatalogue()
	failed := failure.Resources{CPUMillis: 4000, MemoryBytes: 16 << 30, EphemeralStorageBytes: 20 << 30}
	evicted := &Context{Category: failure.DiskFull, Failed: failed, Disk: Need{Floor: 20 << 30}, Runtime: 3600}
	at := func(c *Context, gib int64) Prediction {
		r := failed
		r.EphemeralStorageBytes = gib << 30
		return m.Predict(c, &failure.Option{Resources: r}, &cat, nil)
	}
	if p := at(evicted, 20); p.PDisk > 0.2 || p.PFix != p.PDisk {
		t.Errorf("the limit it was evicted at: PDisk %.3f, PFix %.3f; want near 0, PFix = PDisk", p.PDisk, p.PFix)
	}
	if p := at(evicted, 60); p.PDisk < 0.8 {
		t.Errorf("three times the limit it was evicted at: PDisk %.3f, want likely", p.PDisk)
	}
	known := *evicted
	known.Disk.Estimate, known.Disk.Spread = 26<<30, 0.05
	if p := at(&known, 30); p.PDisk < 0.9 {
		t.Errorf("30 GiB for runs that used 26 GiB: PDisk %.3f, want likely", p.PDisk)
	}
	noLimit := failed
	noLimit.EphemeralStorageBytes = 0
	if p := m.Predict(evicted, &failure.Option{Resources: noLimit}, &cat, nil); p.PDisk != 1 {
		t.Errorf("no limit: PDisk %v, want 1", p.PDisk)
	}
}

func withMemory(r failure.Resources, b int64) failure.Resources {
	r.MemoryBytes = b
	return r
}

func TestNewContext(t *testing.T) {
	cat := failure.DefaultCatalogue()
	res := failure.Resources{CPUMillis: 4000, MemoryBytes: 10 << 30}
	ok := func(peakGiB float64, dur float64) failure.Outcome {
		return failure.Outcome{Resources: res, Succeeded: true, DurationSeconds: dur, Usage: failure.Usage{PeakMemoryBytes: int64(peakGiB * (1 << 30))}}
	}
	history := []failure.Outcome{ok(8, 100), ok(8.1, 110), ok(8.2, 90), ok(8.3, 100),
		{Resources: failure.Resources{MemoryBytes: 9 << 30}, Usage: failure.Usage{PeakMemoryBytes: 9 << 30}}, // an earlier OOM of this run
	}
	ev := &failure.Event{Job: failure.Job{Resources: res}, Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 50,
		Usage: failure.Usage{PeakMemoryBytes: 10 << 30}}}
	c := NewContext(ev, failure.OOMMemory, history, cat)
	if c.MemFloor != 10<<30 {
		t.Errorf("MemFloor = %v GiB, want 10 (the limit it was killed at)", c.MemFloor/(1<<30))
	}
	if c.History != 4 || !c.RuntimeKnown || c.Runtime != 100 {
		t.Errorf("History %d, Runtime %v (known %v); want 4 successes with a median runtime of 100 s", c.History, c.Runtime, c.RuntimeKnown)
	}
	if g := c.MemEstimate / (1 << 30); g < 8.3 || g > 8.6 {
		t.Errorf("MemEstimate = %.2f GiB, want the rising trend continued (8.3-8.6)", g)
	}
}

// TestSuccessesWithoutUsageSayNothingOfTheNeed: on a cluster without metrics the
// successful runs carry no peak; they must not read as a need of zero (which once
// sent a retry below a size that had already worked).
func TestSuccessesWithoutUsageSayNothingOfTheNeed(t *testing.T) {
	cat := failure.DefaultCatalogue()
	failed := failure.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30}
	fixed := failure.Resources{CPUMillis: 4000, MemoryBytes: 13 << 30}
	history := []failure.Outcome{
		{Resources: failed, Category: failure.OOMMemory}, {Resources: fixed, Succeeded: true, DurationSeconds: 60},
		{Resources: failed, Category: failure.OOMMemory}, {Resources: fixed, Succeeded: true, DurationSeconds: 60},
	}
	ev := &failure.Event{Job: failure.Job{Resources: failed}, Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}}
	c := NewContext(ev, failure.OOMMemory, history, cat)
	if c.MemEstimate != 0 || c.History != 2 || c.MemFloor != 8<<30 {
		t.Errorf("MemEstimate %.3g, History %d, MemFloor %.3g GiB; want no estimate from runs without a peak, 2 successes, floor 8",
			c.MemEstimate, c.History, c.MemFloor/(1<<30))
	}
}

// TestFloorsFromTheReasonWithoutMetrics: on a cluster without metrics nothing is
// measured, but what Kubernetes said still names the limit a run hit, whatever the
// classifier made of a text it misread: an OOMKilled container's memory limit; the
// kubelet's eviction for local storage (reason Evicted, or DisruptionTarget as the
// watcher reports it on newer clusters). An eviction for memory, CPU or PID
// pressure, another component's, or the kubelet refusing a pod on a node with disk
// pressure says nothing of the pod's storage, and must not hold its retry to a
// storage floor (which made a preempted job's retry look hopeless, or doubled its
// storage on every eviction).
func TestFloorsFromTheReasonWithoutMetrics(t *testing.T) {
	cat := failure.DefaultCatalogue()
	res := failure.Resources{CPUMillis: 4000, MemoryBytes: 16 << 30, EphemeralStorageBytes: 20 << 30}
	storage := "Pod ephemeral local storage usage exceeds the total limit of containers 20Gi. "
	for _, tc := range []struct {
		name              string
		sig               failure.Signals
		read              failure.Category // what the classifier made of the text
		memFloor, diskGiB float64
	}{
		{"a storage eviction read as a memory failure", failure.Signals{Reason: "Evicted", ExitCode: 137, Message: storage, LogTail: "java.io.IOException: Input/output error"},
			failure.OOMMemory, 16, 20},
		{"a storage eviction read as hardware", failure.Signals{Reason: "Evicted", ExitCode: 137, Message: storage}, failure.Hardware, 0, 20},
		{"a container over its own storage limit, reported as a disruption", failure.Signals{Reason: "DisruptionTarget",
			Message: `Container trainer exceeded its local ephemeral storage limit "20Gi". `}, failure.NetworkTransient, 0, 20},
		{"a node short of storage", failure.Signals{Reason: "Evicted", Message: "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 3Gi. "},
			failure.Hardware, 0, 20},
		{"an eviction without the kubelet's message", failure.Signals{Reason: "Evicted", ExitCode: 137}, failure.Hardware, 0, 0},
		{"an emptyDir over its size limit, which no retry resizes", failure.Signals{Reason: "Evicted",
			Message: `Usage of EmptyDir volume "scratch" exceeds the limit "4Gi". `}, failure.Hardware, 0, 0},
		{"an eviction for node memory pressure", failure.Signals{Reason: "Evicted", Message: "The node was low on resource: memory. Threshold quantity: 100Mi, available: 92Mi."},
			failure.OOMMemory, 16, 0},
		{"a pod refused on a node under memory pressure", failure.Signals{Reason: "Evicted", Message: "The node had condition: [MemoryPressure]. "}, failure.Preempted, 0, 0},
		{"another component's eviction for cpu", failure.Signals{Reason: "Evicted", Message: "Evict offline pod due to cpu resource pressure"}, failure.Preempted, 0, 0},
		{"an OOMKilled container read as unknown", failure.Signals{Reason: "OOMKilled", ExitCode: 137}, failure.Unknown, 16, 0},
		{"exit 137 alone sets no floor", failure.Signals{Reason: "Error", ExitCode: 137}, failure.Unknown, 0, 0},
		{"a measured peak below the limit outranks the message", failure.Signals{Reason: "Evicted", Message: storage, Usage: failure.Usage{PeakEphemeralStorageBytes: 5 << 30}},
			failure.Hardware, 0, 0},
	} {
		ev := &failure.Event{Job: failure.Job{Resources: res}, Failure: tc.sig}
		c := NewContext(ev, tc.read, nil, cat)
		if c.MemFloor != tc.memFloor*(1<<30) || c.Disk.Floor != tc.diskGiB*(1<<30) {
			t.Errorf("%s: MemFloor %.3g GiB, Disk.Floor %.3g GiB; want %v and %v", tc.name, c.MemFloor/(1<<30), c.Disk.Floor/(1<<30), tc.memFloor, tc.diskGiB)
		}
	}
}

// FuzzLoad loads arbitrary artifacts: each is rejected, or predicts probabilities in
// [0, 1] and a runtime and costs that are not negative.
func FuzzLoad(f *testing.F) {
	m, err := Default()
	if err != nil {
		f.Fatal(err)
	}
	good, err := m.Save()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"kind":"autofix-retry-models","version":1}`))
	cat := failure.DefaultCatalogue()
	c := &Context{Category: failure.OOMGPU, Failed: failure.Resources{MemoryBytes: 8 << 30, GPU: 1, GPUType: "nvidia-l4"},
		MemFloor: 8 << 30, GPUFloor: 24 << 30, Runtime: 600, Deadline: 3600}
	opt := &failure.Option{Resources: failure.Resources{MemoryBytes: 12 << 30, CPUMillis: 2000, GPU: 2, GPUType: "nvidia-a100-80gb"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Load(data)
		if err != nil {
			return
		}
		p := m.Predict(c, opt, &cat, nil)
		for _, v := range []float64{p.PSuccess, p.PMemory, p.PGPU, p.PDeadline, p.PFix} {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("a loaded artifact predicts %+v: probabilities outside [0, 1]", p)
			}
		}
		if !(p.RuntimeSeconds >= 0 && p.RunCost >= 0 && p.ExpectedCost >= 0) {
			t.Fatalf("a loaded artifact predicts %+v: negative or NaN runtime or cost", p)
		}
	})
}

// TestRuntimeFromOtherRunsUsesTheCandidate guards against a bug where the runtime
// carried over from a template's runs of another shape was predicted with the
// features of the last such run instead of the candidate's.
func TestRuntimeFromOtherRunsUsesTheCandidate(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cat := failure.DefaultCatalogue()
	failed := failure.Resources{CPUMillis: 8000, MemoryBytes: 64 << 30, GPU: 2, GPUType: "nvidia-a100-40gb"}
	c := &Context{Category: failure.OOMGPU, Failed: failed, GPUFloor: 40 << 30, Runtime: 1000, id: contexts.Add(1),
		RuntimeRuns: []RuntimeRun{{Resources: withGPUs(failed, 4), Seconds: 1800}}}
	s := &Scratch{}
	two := m.Predict(c, &failure.Option{Resources: failed}, &cat, s)
	eight := m.Predict(c, &failure.Option{Resources: withGPUs(failed, 8)}, &cat, s)
	fresh := m.Predict(c, &failure.Option{Resources: withGPUs(failed, 8)}, &cat, &Scratch{})
	if !(eight.RuntimeSeconds < 1800 && 1800 < two.RuntimeSeconds) {
		t.Errorf("runs on 4 GPUs took 1800 s; predicted %0.f s on 2 GPUs and %0.f s on 8: want slower and faster", two.RuntimeSeconds, eight.RuntimeSeconds)
	}
	if eight != fresh {
		t.Errorf("a reused scratch predicts %+v, a fresh one %+v", eight, fresh)
	}
}

func withGPUs(r failure.Resources, n int) failure.Resources {
	r.GPU = n
	return r
}

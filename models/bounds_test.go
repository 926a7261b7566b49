package models

import (
	"math"
	"testing"

	"github.com/autofix/autofix/failure"
)

const gib = float64(1 << 30)

// runs builds a history of n runs without usage (a cluster without metrics): each an
// OOM at failedGiB followed by a retry that succeeded at fixedGiB, labelled with its
// classification as the ledger records it; then the first attempt of the current run,
// killed at failedGiB again.
func runs(n int, failedGiB, fixedGiB float64) ([]failure.Outcome, *failure.Event) {
	res := func(g float64) failure.Resources {
		return failure.Resources{CPUMillis: 4000, MemoryBytes: int64(g * gib)}
	}
	var h []failure.Outcome
	for range n {
		h = append(h,
			failure.Outcome{Attempt: 1, Resources: res(failedGiB), Category: failure.OOMMemory, DurationSeconds: 30},
			failure.Outcome{Attempt: 2, Resources: res(fixedGiB), Succeeded: true, DurationSeconds: 100})
	}
	h = append(h, failure.Outcome{Attempt: 1, Resources: res(failedGiB), Category: failure.OOMMemory, DurationSeconds: 30})
	ev := &failure.Event{Job: failure.Job{Attempt: 1, Resources: res(failedGiB)},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 30}}
	return h, ev
}

// smallestEnough is the smallest memory limit, in steps of 256 MiB above the failed
// one, that the models give a 95% chance of being enough: the limit a retry gets.
func smallestEnough(t *testing.T, m *Models, c *Context) float64 {
	t.Helper()
	cat := failure.DefaultCatalogue()
	for v := c.Failed.MemoryBytes + 256<<20; v < 64<<30; v += 256 << 20 {
		r := c.Failed
		r.MemoryBytes = v
		if p := m.Predict(c, &failure.Option{Resources: r}, &cat, nil); p.PMemory >= 0.95 {
			return float64(v) / gib
		}
	}
	t.Fatal("no memory limit under 64 GiB is likely enough")
	return 0
}

// TestLimitsTriedBoundTheNeedWithoutPeaks: without peaks, the limits a template's runs
// failed and succeeded at bound its need, and a retry is sized within them, not by a
// fixed multiple of the limit it was killed at (which sized a need known to fit in
// 5 GiB at 6.6 GiB).
func TestLimitsTriedBoundTheNeedWithoutPeaks(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cat := failure.DefaultCatalogue()
	for _, tt := range []struct {
		name            string
		runs            int
		failed, fixed   float64
		atMost, atLeast float64 // the limit chosen, GiB
		pFixedAtLeast   float64 // the chance the limit that always worked is enough
	}{
		{"six runs killed at 4 GiB that succeeded at 8 GiB", 6, 4, 8, 8, 4.25, 0.94},
		{"six runs killed at 4 GiB that succeeded at 5 GiB", 6, 4, 5, 5.5, 4.25, 0.85},
		{"twelve runs killed at 4 GiB that succeeded at 5 GiB", 12, 4, 5, 5.5, 4.25, 0.9},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, ev := runs(tt.runs, tt.failed, tt.fixed)
			c := NewContext(ev, failure.OOMMemory, h, cat)
			if c.MemEstimate != 0 || c.MemBounds == nil {
				t.Fatalf("MemEstimate %v, MemBounds %v: want no estimate from peaks, and bounds", c.MemEstimate, c.MemBounds)
			}
			if got := c.MemBounds.Runs; got != tt.runs {
				t.Errorf("bounds from %d runs, want %d", got, tt.runs)
			}
			if p := c.MemBounds.P(tt.failed * gib); p != 0 {
				t.Errorf("P(the limit it was killed at) = %v, want 0", p)
			}
			if p := c.MemBounds.P(tt.fixed * gib); p < tt.pFixedAtLeast {
				t.Errorf("P(%v GiB, the limit every run succeeded at) = %.3f, want at least %v", tt.fixed, p, tt.pFixedAtLeast)
			}
			got := smallestEnough(t, m, &c)
			if got < tt.atLeast || got > tt.atMost {
				t.Errorf("retry sized at %.2f GiB, want %v to %v GiB", got, tt.atLeast, tt.atMost)
			}
		})
	}
}

// TestBoundsFollowANeedThatGrows: runs whose limits show the need rising (each killed
// where the one before succeeded) put the current need above the last success, where
// a stable history with the same last success would not.
func TestBoundsFollowANeedThatGrows(t *testing.T) {
	var rising, stable []bound
	for i := range 10 {
		x := 4 * gib * math.Exp(0.03*float64(i))
		rising = append(rising, bound{run: i, lo: x, hi: x * 1.15})
		stable = append(stable, bound{run: i, lo: 4 * gib * math.Exp(0.27), hi: 4 * gib * math.Exp(0.27) * 1.15})
	}
	last := rising[9].hi
	r, s := fitBounds(rising, 10, rising[9].lo), fitBounds(stable, 10, stable[9].lo)
	if r == nil || s == nil {
		t.Fatal("no bounds")
	}
	if pr, ps := r.P(last), s.P(last); pr >= ps || pr > 0.8 {
		t.Errorf("P(the last success's limit): rising %.3f, stable %.3f; want the rising need likelier to pass it", pr, ps)
	}
	if q := r.Quantile(0.5); q <= rising[9].lo*1.03 {
		t.Errorf("median of a rising need %.2f GiB, want above the last floor %.2f GiB grown by a run", q/gib, rising[9].lo/gib)
	}
}

func TestBoundsProbabilities(t *testing.T) {
	b := fitBounds([]bound{{run: 0, lo: 4 * gib, hi: 8 * gib}, {run: 1, hi: 6 * gib}, {run: 2, lo: 5 * gib, hi: 7 * gib}}, 3, 5*gib)
	if b == nil {
		t.Fatal("no bounds")
	}
	prev := 0.0
	for v := 4.0; v <= 20; v += 0.25 {
		p := b.P(v * gib)
		if p < prev-1e-12 || p < 0 || p > 1 {
			t.Fatalf("P(%v GiB) = %v after %v: want a distribution function", v, p, prev)
		}
		if v <= 5 && p != 0 {
			t.Errorf("P(%v GiB) = %v at or below the floor, want 0", v, p)
		}
		prev = p
	}
	if prev < 0.999 {
		t.Errorf("P(20 GiB) = %v, want near 1", prev)
	}
	for _, q := range []float64{0.1, 0.5, 0.95} {
		v := b.Quantile(q)
		if p := b.P(v); math.Abs(p-q) > 0.01 {
			t.Errorf("P(Quantile(%v) = %.3f GiB) = %.4f", q, v/gib, p)
		}
	}
	// Without a success, the need could be anything above the floor.
	if b := fitBounds([]bound{{run: 0, lo: 4 * gib, hi: math.Inf(1)}}, 1, 5*gib); b != nil {
		t.Errorf("bounds without an upper bound = %+v, want nil", b)
	}
}

func TestLogUpper(t *testing.T) {
	for _, z := range []float64{-40, -30, -8, -1.234, 0, 0.5, 3, 12.3456, 29.99, 30, 35, 100} {
		want := math.Log(0.5 * math.Erfc(z/math.Sqrt2))
		if z >= 30 {
			// Beyond erfc's range in float64 for large z, compare with the series.
			want = -z*z/2 - math.Log(z*math.Sqrt(2*math.Pi)) + math.Log1p(-1/(z*z)+3/(z*z*z*z))
		}
		if got := logUpper(z); math.Abs(got-want) > 1e-4*math.Max(1, math.Abs(want)) {
			t.Errorf("logUpper(%v) = %v, want %v", z, got, want)
		}
	}
	for _, c := range []struct{ a, c, want float64 }{
		{math.Inf(-1), math.Inf(1), 1},
		{math.Inf(-1), 0, 0.5},
		{0, math.Inf(1), 0.5},
		{-1, 1, 0.682689492},
		{8, 9, 6.2210e-16 - 1.1286e-19},
		{-9, -8, 6.2210e-16 - 1.1286e-19},
	} {
		if got := math.Exp(logInterval(c.a, c.c)); math.Abs(got-c.want) > 1e-3*c.want {
			t.Errorf("P(%v < Z <= %v) = %v, want %v", c.a, c.c, got, c.want)
		}
	}
}

func TestRunsOf(t *testing.T) {
	o := func(attempt int, ok bool) failure.Outcome { return failure.Outcome{Attempt: attempt, Succeeded: ok} }
	for _, tt := range []struct {
		name    string
		history []failure.Outcome
		attempt int
		sizes   []int
		current int
	}{
		{"runs and the current one", []failure.Outcome{o(1, false), o(2, true), o(1, true), o(1, false)}, 1, []int{2, 1, 1}, 2},
		{"the current run's second failure", []failure.Outcome{o(1, true), o(1, false), o(2, false)}, 2, []int{1, 2}, 1},
		{"an attempt recorded twice", []failure.Outcome{o(1, false), o(2, false), o(2, false), o(3, true)}, 1, []int{4}, 1},
		{"the current run not yet recorded", []failure.Outcome{o(1, false), o(2, true)}, 1, []int{2}, 1},
		{"no attempt numbers", []failure.Outcome{o(0, true), o(0, true)}, 0, []int{1, 1}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			runs, current := runsOf(tt.history, tt.attempt)
			var sizes []int
			for _, r := range runs {
				sizes = append(sizes, len(r))
			}
			if !equalInts(sizes, tt.sizes) || current != tt.current {
				t.Errorf("runs of sizes %v, current %d; want %v, %d", sizes, current, tt.sizes, tt.current)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGPUBoundsWithoutPeaks: without GPU metrics, the setups a job's runs ran out of
// GPU memory with and succeeded with bound its per-GPU need: after an OOM at micro-
// batch 16, the setup that has always worked since (micro-batch 8) is likely enough,
// and the one that failed is not.
func TestGPUBoundsWithoutPeaks(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cat := failure.DefaultCatalogue()
	declared := map[string]failure.Tunable{
		"micro_batch_size": {Role: failure.RoleMicroBatch, Min: 1, Max: 512},
		"grad_accum_steps": {Role: failure.RoleGradAccum, Min: 1, Max: 256},
	}
	res := failure.Resources{CPUMillis: 8000, MemoryBytes: 64 << 30, GPU: 1, GPUType: "nvidia-a100-40gb"}
	big := map[string]string{"micro_batch_size": "16", "grad_accum_steps": "1"}
	small := map[string]string{"micro_batch_size": "8", "grad_accum_steps": "2"}
	var h []failure.Outcome
	for range 5 {
		h = append(h,
			failure.Outcome{Attempt: 1, Resources: res, Params: big, Category: failure.OOMGPU, DurationSeconds: 20},
			failure.Outcome{Attempt: 2, Resources: res, Params: small, Succeeded: true, DurationSeconds: 3000})
	}
	h = append(h, failure.Outcome{Attempt: 1, Resources: res, Params: big, Category: failure.OOMGPU, DurationSeconds: 20})
	ev := &failure.Event{Job: failure.Job{Attempt: 1, Resources: res, Params: big, Tunables: declared},
		Failure: failure.Signals{Reason: "Error", ExitCode: 1, DurationSeconds: 20, LogTail: "torch.OutOfMemoryError: CUDA out of memory."}}
	c := NewContext(ev, failure.OOMGPU, h, cat)
	if len(c.GPURuns) != 0 || c.GPUBounds == nil {
		t.Fatalf("GPURuns %v, GPUBounds %v: want no peaks and bounds", c.GPURuns, c.GPUBounds)
	}
	predict := func(params map[string]string) Prediction {
		return m.Predict(&c, &failure.Option{Resources: res, Params: params}, &cat, nil)
	}
	if p := predict(small); p.PGPU < 0.9 || p.PFix != p.PGPU {
		t.Errorf("micro-batch 8, which succeeded in every run: PGPU %.3f, PFix %.3f; want likely, PFix = PGPU", p.PGPU, p.PFix)
	}
	if p := predict(big); p.PGPU != 0 {
		t.Errorf("micro-batch 16, which failed in every run: PGPU %.3f, want 0", p.PGPU)
	}
	// A failure of another kind keeps the setup: the bounds do not speak for it.
	if other := NewContext(ev, failure.NetworkTransient, h, cat); other.GPUBounds != nil {
		t.Errorf("GPU bounds for a network failure: %+v, want none", other.GPUBounds)
	}
}

// TestDiskBoundsWithoutPeaks: evictions and successes bound the local-storage need
// as OOMs and successes bound memory, and a storage need the runs have outgrown is at
// risk in a run that failed for memory.
func TestDiskBoundsWithoutPeaks(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cat := failure.DefaultCatalogue()
	res := func(disk float64) failure.Resources {
		return failure.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30, EphemeralStorageBytes: int64(disk * gib)}
	}
	var h []failure.Outcome
	for range 6 {
		h = append(h,
			failure.Outcome{Attempt: 1, Resources: res(20), Category: failure.DiskFull, DurationSeconds: 50},
			failure.Outcome{Attempt: 2, Resources: res(30), Succeeded: true, DurationSeconds: 60})
	}
	h = append(h, failure.Outcome{Attempt: 1, Resources: res(20), Category: failure.DiskFull, DurationSeconds: 50})
	ev := &failure.Event{Job: failure.Job{Attempt: 1, Resources: res(20)},
		Failure: failure.Signals{Reason: "Evicted", ExitCode: 137, Message: "Pod ephemeral local storage usage exceeds the total limit of containers 20Gi."}}
	c := NewContext(ev, failure.DiskFull, h, cat)
	if c.Disk.Bounds == nil || c.Disk.Floor != 20*gib {
		t.Fatalf("Disk %+v: want bounds and the floor at 20 GiB", c.Disk)
	}
	at := func(disk float64) Prediction { return m.Predict(&c, &failure.Option{Resources: res(disk)}, &cat, nil) }
	if p := at(30); p.PDisk < 0.9 || p.PFix != p.PDisk {
		t.Errorf("30 GiB, where every run succeeded: PDisk %.3f, PFix %.3f; want likely, PFix = PDisk", p.PDisk, p.PFix)
	}
	if p := at(20); p.PDisk != 0 {
		t.Errorf("20 GiB, where it was evicted: PDisk %.3f, want 0", p.PDisk)
	}
	// The same history, and a run killed for memory before it filled its disk: its
	// 20 GiB of local storage is at risk, and the candidates are sized past 30.
	ev.Failure = failure.Signals{Reason: "OOMKilled", ExitCode: 137}
	h[len(h)-1].Category = failure.OOMMemory
	oom := NewContext(ev, failure.OOMMemory, h, cat)
	if !oom.Disk.AtRisk(20*gib) || oom.Disk.AtRisk(40*gib) {
		t.Errorf("AtRisk(20 GiB) %v, AtRisk(40 GiB) %v: want the limit the runs outgrew at risk, twice the need not",
			oom.Disk.AtRisk(20*gib), oom.Disk.AtRisk(40*gib))
	}
	if l := oom.Disk.Level(); l < 25*gib || l > 35*gib {
		t.Errorf("Level() = %.1f GiB, want near the 30 GiB that worked", l/gib)
	}
}

func TestNeedAtRiskAndLevel(t *testing.T) {
	b := fitBounds([]bound{{run: 0, hi: 8 * gib}, {run: 1, hi: 8 * gib}, {run: 2, lo: 6 * gib, hi: 8 * gib}}, 3, 0)
	for _, tt := range []struct {
		name   string
		n      Need
		limit  float64
		risk   bool
		levelG float64 // 0: none; -1: from the bounds, between 6 and 9 GiB
	}{
		{"a peak well under the limit", Need{Estimate: 6 * gib}, 8 * gib, false, 6},
		{"a peak near the limit", Need{Estimate: 7.5 * gib}, 8 * gib, true, 7.5},
		{"nothing known", Need{}, 8 * gib, false, 0},
		{"bounds: above the need", Need{Bounds: b}, 10 * gib, false, -1},
		{"bounds: below the need", Need{Bounds: b}, 6 * gib, true, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.n.AtRisk(tt.limit); got != tt.risk {
				t.Errorf("AtRisk(%v GiB) = %v, want %v", tt.limit/gib, got, tt.risk)
			}
			l := tt.n.Level() / gib
			if tt.levelG >= 0 && l != tt.levelG || tt.levelG < 0 && (l < 6 || l > 9) {
				t.Errorf("Level() = %.2f GiB, want %v", l, tt.levelG)
			}
		})
	}
}

// BenchmarkContextWithoutPeaks: what the bounds add to planning an OOM retry on a
// cluster without metrics: the context of a job with 12 runs to fit, and the chances
// of the 48 memory candidates the recommender asks about.
func BenchmarkContextWithoutPeaks(b *testing.B) {
	m, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	cat := failure.DefaultCatalogue()
	h, ev := runs(12, 4, 5)
	s := &Scratch{}
	for b.Loop() {
		c := NewContext(ev, failure.OOMMemory, h, cat)
		for i := range 48 {
			r := c.Failed
			r.MemoryBytes += int64(i+1) << 27
			m.Predict(&c, &failure.Option{Resources: r}, &cat, s)
		}
	}
}

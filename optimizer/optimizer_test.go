package optimizer

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/autofix/autofix/failure"
)

func gpuSpace() *Space {
	return &Space{
		Failed: failure.Option{
			Resources: failure.Resources{CPUMillis: 8000, MemoryBytes: 64 << 30, GPU: 2, GPUType: "a"},
			Params:    map[string]string{"mb": "32", "acc": "2", "prec": "fp32", "ckpt": "false", "lr": "0.1"},
		},
		Declared: map[string]failure.Tunable{
			"mb":   {Role: failure.RoleMicroBatch, Min: 1, Max: 512},
			"acc":  {Role: failure.RoleGradAccum, Min: 1, Max: 64},
			"prec": {Role: failure.RolePrecision, Values: []string{"fp32", "bf16"}},
			"ckpt": {Role: failure.RoleCheckpointing, Values: []string{"false", "true"}},
		},
		GPU: true, GPUTypes: []string{"a", "b"}, MaxGPUs: 8,
	}
}

func TestGPUCandidatesKeepTheGlobalBatch(t *testing.T) {
	cands := gpuSpace().Candidates()
	// 4 micro-batches x 2 precisions x 2 checkpointing x 2 types x 3 counts (2, 4, 8).
	if len(cands) != 4*2*2*2*3 {
		t.Errorf("%d candidates, want %d", len(cands), 4*2*2*2*3)
	}
	for _, c := range cands {
		mb, _ := strconv.Atoi(c.Params["mb"])
		acc, _ := strconv.Atoi(c.Params["acc"])
		if mb*acc != 64 {
			t.Fatalf("micro-batch %d x accumulation %d changes the global batch (64 per GPU)", mb, acc)
		}
		if c.Params["lr"] != "0.1" {
			t.Fatalf("a parameter that is not a tunable changed: %v", c.Params)
		}
		if c.Resources.GPU < 2 || c.Resources.GPU > 8 || c.Resources.MemoryBytes != 64<<30 {
			t.Fatalf("unexpected resources %+v", c.Resources)
		}
	}
}

func TestOnlyDeclaredTunablesChange(t *testing.T) {
	s := gpuSpace()
	delete(s.Declared, "acc") // without accumulation, halving the micro-batch would change the global batch
	delete(s.Declared, "prec")
	for _, c := range s.Candidates() {
		if c.Params["mb"] != "32" || c.Params["prec"] != "fp32" || c.Params["acc"] != "2" {
			t.Fatalf("undeclared or unsafe tunable changed: %v", c.Params)
		}
	}
}

func TestMemoryStepsAndDeadlines(t *testing.T) {
	s := &Space{
		Failed: failure.Option{Resources: failure.Resources{MemoryBytes: 10 << 30}},
		Memory: true, MemoryFloor: 10 << 30, MemoryCap: 20 << 30, MemoryStep: 1.1,
		Deadline: 600, DeadlineMultiples: []float64{1.5, 2},
		Node: "n1", Avoid: true, Delay: 30,
	}
	cands := s.Candidates()
	var mems []int64
	for _, c := range cands {
		if !slices.Contains(mems, c.Resources.MemoryBytes) {
			mems = append(mems, c.Resources.MemoryBytes)
		}
		if c.DeadlineSeconds != 900 && c.DeadlineSeconds != 1200 {
			t.Errorf("deadline %v, want 900 or 1200", c.DeadlineSeconds)
		}
		if !slices.Equal(c.AvoidNodes, []string{"n1"}) || c.DelaySeconds != 30 {
			t.Errorf("candidate %+v does not avoid the node or keep the delay", c)
		}
	}
	if mems[0] != 10<<30 || mems[len(mems)-1] > 20<<30 || len(mems) < 7 {
		t.Errorf("memory steps %v, want from 10 GiB up to 20 GiB in ~10%% steps", mems)
	}
	for i := 1; i < len(mems); i++ {
		if mems[i] <= mems[i-1] || mems[i]%(256<<20) != 0 {
			t.Errorf("steps %v are not increasing multiples of 256 MiB", mems)
		}
	}
}

func TestParetoMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		n := 1 + rng.IntN(400)
		k := 2 + rng.IntN(2) // two objectives take the incremental path, three the general one
		scores := make([][]float64, n)
		for i := range scores {
			// Coarse values make ties and duplicates likely; every other round the first
			// two objectives trade off, which makes the front long.
			a := float64(rng.IntN(20))
			b := float64(rng.IntN(20))
			if round%2 == 1 {
				b = 20 - a + float64(rng.IntN(2))
			}
			scores[i] = []float64{a, b, float64(rng.IntN(3))}[:k]
		}
		want := make([]bool, n)
		for i := range scores {
			want[i] = true
			for j := range scores {
				if j != i && dominates(scores[j], scores[i]) {
					want[i] = false
				}
			}
		}
		if got := pareto(scores); !slices.Equal(got, want) {
			t.Fatalf("round %d: front %v, want %v (scores %v)", round, got, want, scores)
		}
		if k == 2 {
			// A small limit sends pareto2 to the sort; below it, it must agree.
			if front, ok := pareto2(scores, 8); ok {
				got := make([]bool, n)
				for _, i := range front {
					got[i] = true
				}
				if !slices.Equal(got, want) || len(front) > 8 {
					t.Fatalf("round %d: pareto2 front %v, want %v", round, front, want)
				}
			}
		}
	}
}

// fake predicts from memory alone: P rises with memory, cost with it.
type fake struct{}

func (fake) Predict(o *failure.Option) {
	gib := float64(o.Resources.MemoryBytes) / (1 << 30)
	o.PSuccess = 1 / (1 + math.Exp(-(gib - 12)))
	o.PFix = o.PSuccess
	o.RunCost = gib
	o.ExpectedCost = gib * (2 - o.PSuccess)
	o.CostMultiple = gib / 10
}

func TestSolveChoosesCheapestAboveTarget(t *testing.T) {
	s := &Space{Failed: failure.Option{Resources: failure.Resources{MemoryBytes: 10 << 30}}, Memory: true,
		MemoryFloor: 10 << 30, MemoryCap: 40 << 30, MemoryStep: 1.05}
	p := Problem{Space: s, Predictor: fake{}, Scorers: []Scorer{PFailure{}, ExpectedCost{}},
		Filters: []Filter{MaxCostMultiple{Max: 3}, NodeFit{MaxMemoryBytes: 28 << 30}}, Chooser: Target{MinPFix: 0.95}}
	res := p.Solve()
	if res.Chosen != 0 || len(res.Options) == 0 {
		t.Fatalf("Solve = %+v", res)
	}
	best := res.Options[0]
	if best.PFix < 0.95 {
		t.Errorf("chosen PFix %.3f, want >= 0.95", best.PFix)
	}
	for _, o := range res.Options {
		if o.Resources.MemoryBytes > 28<<30 || o.CostMultiple > 3 {
			t.Errorf("infeasible option kept: %+v", o.Resources)
		}
		if o.PFix >= 0.95 && o.ExpectedCost < best.ExpectedCost {
			t.Errorf("option with %d bytes is cheaper above the target than the chosen one", o.Resources.MemoryBytes)
		}
		if !o.Pareto {
			continue
		}
		for _, q := range res.Options {
			if q.PSuccess > o.PSuccess && q.ExpectedCost < o.ExpectedCost {
				t.Errorf("option marked Pareto is dominated")
			}
		}
	}
	// Weighted on cost alone picks the cheapest option of the front.
	p.Chooser = Weighted{Weights: []float64{0, 1}}
	res = p.Solve()
	for _, o := range res.Options {
		if o.Pareto && o.ExpectedCost < res.Options[0].ExpectedCost {
			t.Errorf("weighted (cost only) chose %.2f, the front has %.2f", res.Options[0].ExpectedCost, o.ExpectedCost)
		}
	}
	// Nothing feasible: no choice.
	p.Filters = []Filter{NodeFit{MaxMemoryBytes: 1 << 30}}
	if res := p.Solve(); res.Chosen != -1 || len(res.Options) != 0 {
		t.Errorf("with nothing feasible Solve = %+v", res)
	}
}

func TestTargetFallsBackToTheLikeliest(t *testing.T) {
	front := []failure.Option{{PFix: 0.5, ExpectedCost: 1}, {PFix: 0.79, ExpectedCost: 5}, {PFix: 0.8, ExpectedCost: 9}}
	if got := (Target{MinPFix: 0.95}).Choose(front, nil); got != 1 {
		t.Errorf("Choose = %d, want 1 (the cheapest within 0.02 of the likeliest)", got)
	}
}

func TestSmallest(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100 {
		vals := make([]int, rng.IntN(100))
		idx := make([]int, len(vals))
		for i := range vals {
			vals[i], idx[i] = rng.IntN(20), i
		}
		k := rng.IntN(15)
		cmpf := func(a, b int) int {
			if vals[a] != vals[b] {
				return vals[a] - vals[b]
			}
			return a - b
		}
		got := smallest(slices.Clone(idx), k, cmpf)
		want := slices.Clone(idx)
		slices.SortFunc(want, cmpf)
		want = want[:min(k, len(want))]
		if !slices.Equal(got, want) {
			t.Fatalf("smallest(k=%d) = %v, want %v", k, got, want)
		}
	}
}

// gpuFake predicts a GPU job: its per-GPU need shrinks with a smaller micro-batch,
// bf16 and checkpointing and must fit the GPU model's memory; host memory must reach
// 100 GiB; more GPUs run faster but cost more per hour.
type gpuFake struct{}

func (gpuFake) Predict(o *failure.Option) {
	mb, _ := strconv.Atoi(o.Params["mb"])
	need := 70 * math.Pow(float64(mb)/32, 0.6)
	if o.Params["prec"] == "bf16" {
		need *= 0.6
	}
	if o.Params["ckpt"] == "true" {
		need *= 0.7
	}
	capacity := map[string]float64{"a": 40, "b": 80, "c": 24, "d": 48}[o.Resources.GPUType]
	price := map[string]float64{"a": 2, "b": 4, "c": 1, "d": 2.5}[o.Resources.GPUType]
	gib := float64(o.Resources.MemoryBytes) / (1 << 30)
	pGPU := 1 / (1 + math.Exp(-(0.96*capacity-need)/2))
	pMem := 1 / (1 + math.Exp(-(gib-100)/3))
	hours := 10 * 2 / math.Pow(float64(o.Resources.GPU), 0.9)
	if o.Params["ckpt"] == "true" {
		hours *= 1.3
	}
	o.PSuccess = pGPU * pMem
	o.PFix = o.PSuccess
	o.RunCost = (float64(o.Resources.GPU)*price + gib*0.01) * hours
	o.ExpectedCost = o.RunCost * (2 - o.PSuccess)
	o.CostMultiple = o.RunCost / 100
}

func TestSearchFindsWhatEnumerationFinds(t *testing.T) {
	space := func() *Space {
		s := gpuSpace()
		s.GPUTypes, s.MaxGPUs = []string{"a", "b", "c", "d"}, 16
		s.Memory, s.MemoryFloor, s.MemoryCap, s.MemoryStep = true, 64<<30, 400<<30, 1.01
		return s
	}
	solve := func(search Search) Result {
		p := &Problem{Space: space(), Predictor: gpuFake{}, Scorers: []Scorer{PFailure{}, ExpectedCost{}},
			Chooser: Target{MinPFix: 0.95}, Search: search}
		return p.Solve()
	}
	all := solve(Search{MaxExhaustive: 1 << 30})
	if all.Searched || all.Considered != all.SpaceSize || all.SpaceSize < 20_000 {
		t.Fatalf("enumeration: considered %d of %d (searched %v); want a space over 20,000, all of it", all.Considered, all.SpaceSize, all.Searched)
	}
	best := all.Options[all.Chosen]
	for seed := range uint64(5) {
		got := solve(Search{Seed: seed, MaxExhaustive: 10_000})
		if !got.Searched || got.Considered > 4000 || got.SpaceSize != all.SpaceSize {
			t.Fatalf("seed %d: considered %d of %d (searched %v); want a search within the budget", seed, got.Considered, got.SpaceSize, got.Searched)
		}
		o := got.Options[got.Chosen]
		t.Logf("seed %d: searched %d of %d; chose %s x%d mb %s %s ckpt %s %s: PFix %.3f, cost %.2f (enumeration: %.2f)",
			seed, got.Considered, got.SpaceSize, o.Resources.GPUType, o.Resources.GPU, o.Params["mb"], o.Params["prec"], o.Params["ckpt"],
			failure.FormatBytes(o.Resources.MemoryBytes), o.PFix, o.ExpectedCost, best.ExpectedCost)
		if o.PFix < 0.95 || o.ExpectedCost > 1.05*best.ExpectedCost {
			t.Errorf("seed %d: the search chose PFix %.3f at %.2f; enumeration finds %.3f at %.2f", seed, o.PFix, o.ExpectedCost, best.PFix, best.ExpectedCost)
		}
	}
	if a, b := solve(Search{Seed: 1, MaxExhaustive: 10_000}), solve(Search{Seed: 1, MaxExhaustive: 10_000}); a.Options[a.Chosen].ExpectedCost != b.Options[b.Chosen].ExpectedCost || a.Considered != b.Considered {
		t.Error("the same seed searched differently")
	}
}

// BenchmarkSolveLarge compares enumerating a 47,360-candidate space with searching
// it (4,000 evaluations), with a predictor of about 1 µs.
func BenchmarkSolveLarge(b *testing.B) {
	for _, c := range []struct {
		name   string
		search Search
	}{{"enumerate", Search{MaxExhaustive: 1 << 30}}, {"search", Search{MaxExhaustive: 10_000}}} {
		b.Run(c.name, func(b *testing.B) {
			s := gpuSpace()
			s.GPUTypes, s.MaxGPUs = []string{"a", "b", "c", "d"}, 16
			s.Memory, s.MemoryFloor, s.MemoryCap, s.MemoryStep = true, 64<<30, 400<<30, 1.01
			p := &Problem{Space: s, Predictor: gpuFake{}, Scorers: []Scorer{PFailure{}, ExpectedCost{}},
				Chooser: Target{MinPFix: 0.95}, Search: c.search, MaxOptions: 12}
			b.ReportAllocs()
			var res Result
			for b.Loop() {
				res = p.Solve()
			}
			b.ReportMetric(float64(res.Considered), "evaluated")
		})
	}
}

func TestFronts2MatchesTheGeneralSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for round := range 100 {
		n := 1 + rng.IntN(120)
		e := &evolution{p: &Problem{Scorers: []Scorer{PFailure{}, ExpectedCost{}}}}
		cands := make([]int, n)
		for i := range n {
			sc := []float64{float64(rng.IntN(8)), float64(rng.IntN(8))}
			if rng.IntN(10) == 0 {
				sc = []float64{math.Inf(1), math.Inf(1)} // infeasible
			}
			e.scores = append(e.scores, sc)
			cands[i] = i
		}
		fast := e.fronts2(cands)
		e.p.Scorers = append(e.p.Scorers, Runtime{}) // a third scorer takes the general path
		for i := range e.scores {
			e.scores[i] = append(e.scores[i], 0)
		}
		general := e.fronts(cands)
		if len(fast) != len(general) {
			t.Fatalf("round %d: %d fronts, the general sort finds %d", round, len(fast), len(general))
		}
		for k := range fast {
			a, b := slices.Sorted(slices.Values(fast[k])), slices.Sorted(slices.Values(general[k]))
			if !slices.Equal(a, b) {
				t.Fatalf("round %d front %d: %v, the general sort finds %v", round, k, a, b)
			}
		}
	}
}

// saturated predicts a chance of success that keeps creeping up with memory past
// what is needed, by amounts no one could measure.
type saturated struct{}

func (saturated) Predict(o *failure.Option) {
	gib := float64(o.Resources.MemoryBytes) / (1 << 30)
	o.PSuccess = 0.97 + 1e-5*gib
	o.PFix = o.PSuccess
	o.ExpectedCost = gib
	o.RunCost, o.CostMultiple = gib, gib/10
}

// TestFrontIgnoresNoise: options whose P(failure) differs by less than 2% of itself
// are not flagged Pareto when they cost more. (Quantizing is a grid: across the 3%
// this series spans, one flag per step of it.)
func TestFrontIgnoresNoise(t *testing.T) {
	s := &Space{Failed: failure.Option{Resources: failure.Resources{MemoryBytes: 10 << 30}}, Memory: true,
		MemoryFloor: 10 << 30, MemoryCap: 100 << 30, MemoryStep: 1.1}
	p := Problem{Space: s, Predictor: saturated{}, Scorers: []Scorer{PFailure{}, ExpectedCost{}}, Chooser: Target{MinPFix: 0.95}}
	res := p.Solve()
	front := 0
	for _, o := range res.Options {
		if o.Pareto {
			front++
		}
	}
	if front > 3 || len(res.Options) < 10 || !res.Options[0].Pareto || res.Options[0].Resources.MemoryBytes >= 12<<30 {
		t.Errorf("%d of %d options on the front, the first %d GiB; want the cheapest and at most one step of the grid",
			front, len(res.Options), res.Options[0].Resources.MemoryBytes>>30)
	}
}

// twins predicts 10Gi just under the target, 11Gi just over it (the two tie once
// quantized) for a hair more, 12Gi far over it at twice the cost.
type twins struct{}

func (twins) Predict(o *failure.Option) {
	switch o.Resources.MemoryBytes >> 30 {
	case 10:
		o.PSuccess, o.ExpectedCost = 0.9499, 1.0
	case 11:
		o.PSuccess, o.ExpectedCost = 0.9501, 1.0009
	default:
		o.PSuccess, o.ExpectedCost = 0.99, 2.0
	}
	o.PFix, o.RunCost, o.CostMultiple = o.PSuccess, o.ExpectedCost, o.ExpectedCost
}

// TestChoiceIsOnTheExactFront: flags ignore noise, the choice does not: the cheapest
// option over the target is chosen even when a near-twin below it is cheaper still.
func TestChoiceIsOnTheExactFront(t *testing.T) {
	s := &Space{Failed: failure.Option{Resources: failure.Resources{MemoryBytes: 10 << 30}}, Memory: true,
		MemoryFloor: 10 << 30, MemoryCap: 12 << 30, MemoryStep: 1.1}
	p := Problem{Space: s, Predictor: twins{}, Scorers: []Scorer{PFailure{}, ExpectedCost{}}, Chooser: Target{MinPFix: 0.95}}
	res := p.Solve()
	if got := res.Options[0]; got.Resources.MemoryBytes>>30 != 11 || !got.Pareto {
		t.Errorf("chose %d GiB (Pareto %v); want 11 GiB, flagged", got.Resources.MemoryBytes>>30, got.Pareto)
	}
}

// The GPU counts double from the failed run's up to MaxGPUs, whatever MaxGPUs is: a
// node that advertises an absurd GPU count (2^62 or more) once made the doubling
// overflow and loop for ever, appending, until the process ran out of memory.
func TestGPUCountsStopAtAHugeMaxGPUs(t *testing.T) {
	for _, maxGPUs := range []int{math.MaxInt, math.MaxInt/2 + 1, 1 << 62, 8} {
		s := gpuSpace()
		s.GPUTypes, s.MaxGPUs = []string{"a"}, maxGPUs
		g := s.grid()
		if len(g.counts) > 63 {
			t.Fatalf("MaxGPUs %d: %d GPU counts, want at most 63", maxGPUs, len(g.counts))
		}
		for i, n := range g.counts {
			if n < 2 || n > maxGPUs || (i > 0 && n != 2*g.counts[i-1]) {
				t.Fatalf("MaxGPUs %d: counts %v, want the failed run's 2 doubling up to at most %d", maxGPUs, g.counts, maxGPUs)
			}
		}
	}
}

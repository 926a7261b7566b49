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

package optimizer

import (
	"cmp"
	"math"
	"slices"

	"github.com/autofix/autofix/failure"
)

// Predictor fills in what the models expect of a candidate: its PSuccess,
// RuntimeSeconds, RunCost and ExpectedCost.
type Predictor interface {
	Predict(opt *failure.Option)
}

// Filter keeps the feasible candidates.
type Filter interface {
	Feasible(opt *failure.Option) bool
}

// Scorer is one objective: lower scores are better.
type Scorer interface {
	Name() string
	Score(opt *failure.Option) float64
}

// Chooser picks one point of the Pareto front.
type Chooser interface {
	// Choose returns the index in front of the option to apply; scores[i][j] is
	// front[i]'s score on objective j.
	Choose(front []failure.Option, scores [][]float64) int
}

// Problem is one optimisation: a space, what predicts its candidates, and how to
// judge them.
type Problem struct {
	Space     *Space
	Predictor Predictor
	Filters   []Filter
	Scorers   []Scorer
	Chooser   Chooser
}

// Result is the outcome of an optimisation.
type Result struct {
	// Options are the feasible candidates, the Pareto front first (in the chooser's
	// order of preference) and the rest by their first objective.
	Options []failure.Option
	// Chosen indexes Options; -1 when nothing was feasible.
	Chosen int
	// Considered is how many candidates the space held.
	Considered int
}

// Solve enumerates, filters, predicts and scores the candidates, and chooses.
func (p *Problem) Solve() Result {
	cands := p.Space.Candidates()
	res := Result{Considered: len(cands), Chosen: -1}
	feasible := cands[:0]
	for i := range cands {
		o := &cands[i]
		p.Predictor.Predict(o)
		if p.feasible(o) {
			feasible = append(feasible, *o)
		}
	}
	if len(feasible) == 0 {
		return res
	}
	scores := make([][]float64, len(feasible))
	flat := make([]float64, len(feasible)*len(p.Scorers))
	for i := range feasible {
		scores[i] = flat[i*len(p.Scorers) : (i+1)*len(p.Scorers)]
		for j, s := range p.Scorers {
			scores[i][j] = s.Score(&feasible[i])
		}
	}
	onFront := pareto(scores)
	var front, rest []int
	for i, on := range onFront {
		feasible[i].Pareto = on
		if on {
			front = append(front, i)
		} else {
			rest = append(rest, i)
		}
	}
	// Order the front by the first objective, then let the chooser pick.
	byFirst := func(a, b int) int {
		return cmp.Or(cmp.Compare(scores[a][0], scores[b][0]), cmp.Compare(scores[a][1%len(p.Scorers)], scores[b][1%len(p.Scorers)]))
	}
	slices.SortStableFunc(front, byFirst)
	slices.SortStableFunc(rest, byFirst)
	frontOpts := make([]failure.Option, len(front))
	frontScores := make([][]float64, len(front))
	for i, j := range front {
		frontOpts[i], frontScores[i] = feasible[j], scores[j]
	}
	chosen := p.Chooser.Choose(frontOpts, frontScores)
	// The chosen option leads; the rest of the front follows, then the others.
	res.Options = make([]failure.Option, 0, len(feasible))
	res.Options = append(res.Options, frontOpts[chosen])
	for i, o := range frontOpts {
		if i != chosen {
			res.Options = append(res.Options, o)
		}
	}
	for _, j := range rest {
		res.Options = append(res.Options, feasible[j])
	}
	res.Chosen = 0
	return res
}

func (p *Problem) feasible(o *failure.Option) bool {
	for _, f := range p.Filters {
		if !f.Feasible(o) {
			return false
		}
	}
	return true
}

// pareto marks the points no other point dominates (no worse on every objective and
// better on one). Points are sorted by the first objective so each is compared only
// with the points before it on that axis.
func pareto(scores [][]float64) []bool {
	n := len(scores)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		for k := range scores[a] {
			if c := cmp.Compare(scores[a][k], scores[b][k]); c != 0 {
				return c
			}
		}
		return 0
	})
	on := make([]bool, n)
	var front []int
	for _, i := range idx {
		dominated := false
		for _, j := range front {
			if dominates(scores[j], scores[i]) {
				dominated = true
				break
			}
		}
		if !dominated {
			on[i] = true
			front = append(front, i)
		}
	}
	return on
}

func dominates(a, b []float64) bool {
	better := false
	for k := range a {
		if a[k] > b[k] {
			return false
		}
		if a[k] < b[k] {
			better = true
		}
	}
	return better
}

// PFailure scores the probability that the retry fails.
type PFailure struct{}

// Name implements Scorer.
func (PFailure) Name() string { return "pFailure" }

// Score implements Scorer.
func (PFailure) Score(o *failure.Option) float64 { return 1 - o.PSuccess }

// ExpectedCost scores the expected cost of the retry, in dollars.
type ExpectedCost struct{}

// Name implements Scorer.
func (ExpectedCost) Name() string { return "expectedCost" }

// Score implements Scorer.
func (ExpectedCost) Score(o *failure.Option) float64 { return o.ExpectedCost }

// Runtime scores the runtime of a successful retry, in seconds.
type Runtime struct{}

// Name implements Scorer.
func (Runtime) Name() string { return "runtime" }

// Score implements Scorer.
func (Runtime) Score(o *failure.Option) float64 { return o.RuntimeSeconds }

// MaxCostMultiple drops options whose run costs more than Max times the failed run's.
type MaxCostMultiple struct{ Max float64 }

// Feasible implements Filter.
func (f MaxCostMultiple) Feasible(o *failure.Option) bool {
	return f.Max <= 0 || o.CostMultiple <= f.Max
}

// NodeFit drops options no node can hold.
type NodeFit struct {
	MaxMemoryBytes, MaxCPUMillis int64
	MaxGPUs                      int
}

// Feasible implements Filter.
func (f NodeFit) Feasible(o *failure.Option) bool {
	r := o.Resources
	return (f.MaxMemoryBytes <= 0 || r.MemoryBytes <= f.MaxMemoryBytes) &&
		(f.MaxCPUMillis <= 0 || r.CPUMillis <= f.MaxCPUMillis) &&
		(f.MaxGPUs <= 0 || r.GPU <= f.MaxGPUs)
}

// Target chooses the front's cheapest option (by expected cost) whose probability of
// fixing what failed (PFix) is at least MinPFix; when none is, the cheapest of those
// within Tolerance of the most likely to fix it (default 0.02).
type Target struct{ MinPFix, Tolerance float64 }

// Choose implements Chooser.
func (t Target) Choose(front []failure.Option, _ [][]float64) int {
	best := -1
	for i, o := range front {
		if o.PFix >= t.MinPFix && (best < 0 || o.ExpectedCost < front[best].ExpectedCost) {
			best = i
		}
	}
	if best >= 0 {
		return best
	}
	top := 0.0
	for _, o := range front {
		top = math.Max(top, o.PFix)
	}
	tol := t.Tolerance
	if tol <= 0 {
		tol = 0.02
	}
	for i, o := range front {
		if o.PFix >= top-tol && (best < 0 || o.ExpectedCost < front[best].ExpectedCost) {
			best = i
		}
	}
	return best
}

// Weighted chooses by a weighted sum of the objectives, each scaled to [0, 1] over
// the front (the linear combination Netflix describes). Weights follow the order of
// the problem's scorers; missing weights count 1.
type Weighted struct{ Weights []float64 }

// Choose implements Chooser.
func (w Weighted) Choose(front []failure.Option, scores [][]float64) int {
	if len(front) == 0 {
		return -1
	}
	k := len(scores[0])
	lo, hi := make([]float64, k), make([]float64, k)
	for j := range k {
		lo[j], hi[j] = math.Inf(1), math.Inf(-1)
		for i := range scores {
			lo[j], hi[j] = math.Min(lo[j], scores[i][j]), math.Max(hi[j], scores[i][j])
		}
	}
	best, bestScore := 0, math.Inf(1)
	for i := range scores {
		s := 0.0
		for j := range k {
			weight := 1.0
			if j < len(w.Weights) {
				weight = w.Weights[j]
			}
			if hi[j] > lo[j] {
				s += weight * (scores[i][j] - lo[j]) / (hi[j] - lo[j])
			}
		}
		if s < bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

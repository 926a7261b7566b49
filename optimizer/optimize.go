package optimizer

import (
	"cmp"
	"math"
	"slices"
	"sync"

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
	// MaxOptions bounds the options the result lists (0: all of them).
	MaxOptions int
	// Search configures the search of spaces too large to enumerate.
	Search Search
}

// Result is the outcome of an optimisation.
type Result struct {
	// Options are the feasible candidates, the chosen one first, then the rest of the
	// Pareto front and then the others, each by their first objective; at most
	// Problem.MaxOptions of them when that is set.
	Options []failure.Option
	// Feasible is how many candidates passed the filters.
	Feasible int
	// Chosen indexes Options; -1 when nothing was feasible.
	Chosen int
	// Considered is how many candidates were evaluated: the whole space, or what
	// the search of a space larger than Search.MaxExhaustive looked at (Searched).
	Considered int
	SpaceSize  int
	Searched   bool
}

// scratch holds the buffers of one Solve, which are large (thousands of options and
// their scores) and short-lived: the result copies out the options it keeps.
type scratch struct {
	cands   []failure.Option
	scores  [][]float64
	flat    []float64
	qscores [][]float64 // quantized, for the front
	qflat   []float64
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (s *scratch) release() {
	clear(s.cands) // drop the references to params and node lists
	clear(s.scores)
	clear(s.qscores)
	scratchPool.Put(s)
}

// Solve enumerates the candidates (or, in a space larger than Search.MaxExhaustive,
// searches it), predicts, filters and scores them, finds the Pareto front and
// chooses.
func (p *Problem) Solve() Result {
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	g := p.Space.grid()
	res := Result{SpaceSize: g.size(), Chosen: -1}
	var feasible []failure.Option
	if g.size() <= p.Search.withDefaults().MaxExhaustive {
		sc.cands = g.appendAll(sc.cands[:0])
		feasible = sc.cands[:0] // filtered in place
		for i := range sc.cands {
			if o := &sc.cands[i]; p.evaluate(o) {
				feasible = append(feasible, *o)
			}
		}
		res.Considered = len(sc.cands)
	} else {
		var ok []bool
		sc.cands, ok = p.evolve(g, sc.cands[:0])
		feasible = sc.cands[:0]
		for i, o := range sc.cands {
			if ok[i] {
				feasible = append(feasible, o)
			}
		}
		res.Considered, res.Searched = len(sc.cands), true
	}
	res.Feasible = len(feasible)
	if len(feasible) == 0 {
		return res
	}
	scores := slices.Grow(sc.scores[:0], len(feasible))[:len(feasible)]
	flat := slices.Grow(sc.flat[:0], len(feasible)*len(p.Scorers))[:len(feasible)*len(p.Scorers)]
	sc.scores, sc.flat = scores, flat
	for i := range feasible {
		scores[i] = flat[i*len(p.Scorers) : (i+1)*len(p.Scorers)]
		for j, s := range p.Scorers {
			v := s.Score(&feasible[i])
			if math.IsNaN(v) {
				v = math.Inf(1) // a score nobody can read is the worst one
			}
			scores[i][j] = v
		}
	}
	// The chooser picks from the exact front; the Pareto flags people see (and an
	// approver may pick from) leave out options that differ only by noise and cost more.
	onFront := pareto(scores)
	shown := paretoShown(p.Scorers, scores, onFront, sc)
	var front, rest []int
	for i, on := range onFront {
		feasible[i].Pareto = shown[i]
		if on {
			front = append(front, i)
		} else {
			rest = append(rest, i)
		}
	}
	// Order the front by the objectives, then let the chooser pick.
	byScores := func(a, b int) int {
		return cmp.Or(compareScores(scores[a], scores[b]), cmp.Compare(a, b))
	}
	slices.SortFunc(front, byScores)
	frontOpts := make([]failure.Option, len(front))
	frontScores := make([][]float64, len(front))
	for i, j := range front {
		frontOpts[i], frontScores[i] = feasible[j], scores[j]
	}
	chosen := p.Chooser.Choose(frontOpts, frontScores)
	frontOpts[chosen].Pareto = true
	// The chosen option leads; the rest of the front follows, then the others.
	limit := len(feasible)
	if p.MaxOptions > 0 {
		limit = min(limit, p.MaxOptions)
	}
	res.Options = make([]failure.Option, 0, limit)
	res.Options = append(res.Options, frontOpts[chosen])
	for i, o := range frontOpts {
		if i != chosen && len(res.Options) < limit {
			res.Options = append(res.Options, o)
		}
	}
	for _, j := range smallest(rest, limit-len(res.Options), byScores) {
		res.Options = append(res.Options, feasible[j])
	}
	res.Chosen = 0
	return res
}

// smallest returns the k smallest of idx by cmp, in order, without sorting the rest.
func smallest(idx []int, k int, cmp func(a, b int) int) []int {
	if k <= 0 {
		return nil
	}
	if k*8 >= len(idx) {
		slices.SortFunc(idx, cmp)
		return idx[:min(k, len(idx))]
	}
	out := make([]int, 0, k+1)
	for _, i := range idx {
		if len(out) == k && cmp(i, out[k-1]) >= 0 {
			continue
		}
		at, _ := slices.BinarySearchFunc(out, i, cmp)
		out = slices.Insert(out, at, i)
		if len(out) > k {
			out = out[:k]
		}
	}
	return out
}

// evaluate predicts o and reports whether it passes the filters. An option whose
// predictions are not finite numbers in range (models fed extreme inputs) is never
// feasible: nothing downstream could encode or act on it.
func (p *Problem) evaluate(o *failure.Option) bool {
	p.Predictor.Predict(o)
	if o.Check() != nil {
		return false
	}
	for _, f := range p.Filters {
		if !f.Feasible(o) {
			return false
		}
	}
	return true
}

// pareto marks the points no other point dominates (no worse on every objective and
// better on one); equal points are all kept, and scores hold no NaNs.
func pareto(scores [][]float64) []bool {
	on := make([]bool, len(scores))
	if len(scores) > 0 && len(scores[0]) == 2 {
		if front, ok := pareto2(scores, maxIncrementalFront); ok {
			for _, i := range front {
				on[i] = true
			}
			return on
		}
	}
	// The general case: sorted lexicographically, a point can only be dominated by one
	// before it, and only by one already on the front.
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return compareScores(scores[a], scores[b]) })
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

// maxIncrementalFront is the front size beyond which pareto2 gives up: its updates
// cost O(front) each, so a front that big is better found by sorting.
const maxIncrementalFront = 256

// pareto2 finds the front of two objectives incrementally, keeping the front sorted
// by the first objective (so strictly decreasing in the second). Each point costs a
// binary search and, rarely, an update, instead of the O(log n) comparisons per point
// of a full sort. It reports false when the front grows past limit.
func pareto2(scores [][]float64, limit int) ([]int, bool) {
	front := make([]int, 0, 32)
	for i, s := range scores {
		a, b := s[0], s[1]
		// k is the first front point whose first score is not below a.
		k, _ := slices.BinarySearchFunc(front, a, func(j int, a float64) int {
			switch {
			case scores[j][0] < a:
				return -1
			case scores[j][0] > a:
				return 1
			}
			return 0
		})
		switch {
		case k < len(front) && scores[front[k]][0] == a && scores[front[k]][1] == b:
			// Equal to a point on the front: on it as well.
			front = slices.Insert(front, k, i)
		case k < len(front) && scores[front[k]][0] == a && scores[front[k]][1] < b,
			k > 0 && scores[front[k-1]][1] <= b:
			continue // dominated by front[k] or front[k-1]
		default:
			// i dominates the points from k on whose second score is not below b.
			end := k
			for end < len(front) && scores[front[end]][1] >= b {
				end++
			}
			front = slices.Replace(front, k, end, i)
		}
		if len(front) > limit {
			return nil, false
		}
	}
	return front, true
}

// compareScores orders score vectors lexicographically; Solve has replaced NaNs, so
// plain comparisons are a total order.
func compareScores(a, b []float64) int {
	for k := range a {
		switch {
		case a[k] < b[k]:
			return -1
		case a[k] > b[k]:
			return 1
		}
	}
	return 0
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

// Quantizer is a Scorer whose scores mean nothing beyond some precision: the front is
// found on its quantized scores, so that options differing by noise (P(success)
// 0.97761 and 0.97763) do not both make the front when one costs much more.
type Quantizer interface {
	Quantize(score float64) float64
}

// quantized returns the scores the front is found on: quantized where the scorer
// says, in the scratch's second buffer.
func quantized(scorers []Scorer, scores [][]float64, sc *scratch) [][]float64 {
	some := false
	for _, s := range scorers {
		_, ok := s.(Quantizer)
		some = some || ok
	}
	if !some {
		return scores
	}
	n := len(scorers)
	sc.qflat = slices.Grow(sc.qflat[:0], len(scores)*n)[:len(scores)*n]
	sc.qscores = slices.Grow(sc.qscores[:0], len(scores))[:len(scores)]
	for i := range scores {
		row := sc.qflat[i*n : (i+1)*n]
		for j, s := range scorers {
			row[j] = scores[i][j]
			if q, ok := s.(Quantizer); ok && !math.IsInf(row[j], 0) {
				row[j] = q.Quantize(row[j])
			}
		}
		sc.qscores[i] = row
	}
	return sc.qscores
}

// paretoShown is the front found on the quantized scores, less any option another
// of it dominates on the exact scores (quantizing makes ties).
func paretoShown(scorers []Scorer, scores [][]float64, exact []bool, sc *scratch) []bool {
	q := quantized(scorers, scores, sc)
	if len(q) > 0 && &q[0][0] == &scores[0][0] {
		return exact // nothing quantized
	}
	shown := pareto(q)
	var on []int
	for i, ok := range shown {
		if ok {
			on = append(on, i)
		}
	}
	for _, i := range on {
		for _, j := range on {
			if i != j && dominates(scores[j], scores[i]) {
				shown[i] = false
				break
			}
		}
	}
	return shown
}

// relative rounds v > 0 to a grid of the given relative step (even in log space);
// values too large to round are left alone.
func relative(v, step float64) float64 {
	if !(v > 0) || math.IsInf(v, 0) {
		return v
	}
	ls := math.Log1p(step)
	r := math.Exp(math.Round(math.Log(v)/ls) * ls)
	if math.IsInf(r, 0) {
		return v
	}
	return r
}

// PFailure scores the probability that the retry fails.
type PFailure struct{}

// Quantize implements Quantizer: to 2% of the probability of failure (0.02237 and
// 0.02239 are one; 0.0005 and 0.0014 are not).
func (PFailure) Quantize(v float64) float64 { return relative(v, 0.02) }

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

// Quantize implements Quantizer: costs to 0.1%.
func (ExpectedCost) Quantize(v float64) float64 { return relative(v, 0.001) }

// Runtime scores the runtime of a successful retry, in seconds.
type Runtime struct{}

// Name implements Scorer.
func (Runtime) Name() string { return "runtime" }

// Score implements Scorer.
func (Runtime) Score(o *failure.Option) float64 { return o.RuntimeSeconds }

// Quantize implements Quantizer: runtimes to 0.1%.
func (Runtime) Quantize(v float64) float64 { return relative(v, 0.001) }

// MaxCostMultiple drops options whose run costs more than Max times the failed run's.
type MaxCostMultiple struct{ Max float64 }

// Feasible implements Filter.
func (f MaxCostMultiple) Feasible(o *failure.Option) bool {
	return f.Max <= 0 || o.CostMultiple <= f.Max
}

// NodeFit drops options no node can hold; zero fields do not limit.
type NodeFit struct {
	MaxMemoryBytes, MaxCPUMillis, MaxEphemeralBytes int64
	MaxGPUs                                         int
}

// Feasible implements Filter.
func (f NodeFit) Feasible(o *failure.Option) bool {
	return fits(o.Resources, failure.Resources{MemoryBytes: f.MaxMemoryBytes, CPUMillis: f.MaxCPUMillis,
		EphemeralStorageBytes: f.MaxEphemeralBytes, GPU: f.MaxGPUs})
}

// fits reports whether r is within limit, whose zero fields do not limit.
func fits(r, limit failure.Resources) bool {
	return (limit.MemoryBytes <= 0 || r.MemoryBytes <= limit.MemoryBytes) &&
		(limit.CPUMillis <= 0 || r.CPUMillis <= limit.CPUMillis) &&
		(limit.EphemeralStorageBytes <= 0 || r.EphemeralStorageBytes <= limit.EphemeralStorageBytes) &&
		(limit.GPU <= 0 || r.GPU <= limit.GPU)
}

// Quota drops options that would take more than a namespace has left: Limit is the
// headroom (hard limit minus what is in use, the failed run's share freed); zero
// fields do not limit.
type Quota struct{ Limit failure.Resources }

// Feasible implements Filter.
func (q Quota) Feasible(o *failure.Option) bool { return fits(o.Resources, q.Limit) }

// QueueQuota drops options a Kueue ClusterQueue has no room for: an option fits
// when, in every resource group of the queue, one flavor has room for each resource
// the group covers (Kueue admits a pod set on one flavor per group). No groups: no
// limit.
type QueueQuota struct{ Groups []QuotaGroup }

// QuotaGroup is one resource group of a ClusterQueue: the resources it covers, and
// for each of its flavors the room left of them (what one pod may take).
type QuotaGroup struct {
	Covers Covered
	Room   []failure.Resources
}

// Covered names the resources a quota group covers.
type Covered struct{ Memory, CPU, GPU, EphemeralStorage bool }

// holds reports whether room has space for need in every resource c covers; a zero
// room is no space at all.
func (c Covered) holds(need, room failure.Resources) bool {
	return (!c.Memory || need.MemoryBytes <= room.MemoryBytes) &&
		(!c.CPU || need.CPUMillis <= room.CPUMillis) &&
		(!c.GPU || need.GPU <= room.GPU) &&
		(!c.EphemeralStorage || need.EphemeralStorageBytes <= room.EphemeralStorageBytes)
}

// Feasible implements Filter.
func (q QueueQuota) Feasible(o *failure.Option) bool {
	for _, g := range q.Groups {
		if !slices.ContainsFunc(g.Room, func(r failure.Resources) bool { return g.Covers.holds(o.Resources, r) }) {
			return false
		}
	}
	return true
}

// Target chooses the front's cheapest option (by expected cost) whose probability of
// fixing what failed (PFix) is at least MinPFix; when none is, the cheapest of those
// within Tolerance of the most likely to fix it (default 0.02).
type Target struct{ MinPFix, Tolerance float64 }

// Choose implements Chooser.
func (t Target) Choose(front []failure.Option, _ [][]float64) int {
	if best := cheapest(front, t.MinPFix); best >= 0 {
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
	return cheapest(front, top-tol)
}

// cheapest indexes the option of least expected cost with PFix at least minPFix, or
// is -1.
func cheapest(opts []failure.Option, minPFix float64) int {
	best, bestCost := -1, math.Inf(1)
	for i, o := range opts {
		if o.PFix >= minPFix && (best < 0 || o.ExpectedCost < bestCost) {
			best, bestCost = i, o.ExpectedCost
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

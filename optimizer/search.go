package optimizer

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/autofix/autofix/failure"
)

// Search configures how Solve explores a space too large to enumerate: NSGA-II
// (Deb et al., 2002), an evolutionary search that keeps a population spread along the
// Pareto front. Zero values mean the defaults.
type Search struct {
	// MaxExhaustive is the largest space Solve enumerates. Default 50,000: about
	// where enumerating (some 0.2 µs a candidate with the default models, which
	// reuse predictions between neighbours) costs what a search of the default
	// budget does (about 2 µs an evaluation, in no useful order).
	MaxExhaustive int
	// Budget bounds the candidates the search evaluates. Default 4,000.
	Budget int
	// Population is the number of candidates kept from one generation to the next.
	// Default 48.
	Population int
	// Seed makes the search reproducible; the same problem gets the same answer.
	Seed uint64
}

func (s Search) withDefaults() Search {
	s.MaxExhaustive = cmp.Or(s.MaxExhaustive, 50_000)
	s.Budget = cmp.Or(s.Budget, 4_000)
	s.Population = max(cmp.Or(s.Population, 48), 4)
	return s
}

// evolution is one run of NSGA-II over a grid.
type evolution struct {
	p    *Problem
	g    *grid
	rng  *rand.Rand
	cfg  Search
	seen map[uint64]int32 // point (as a number) -> index in cands

	points [][numDims]int   // the point of each candidate
	cands  []failure.Option // every candidate evaluated, predicted
	ok     []bool           // whether it passed the filters
	scores [][]float64      // its objectives; +Inf for the infeasible
	flat   []float64        // backs scores

	beats []bool // buffers of fronts
	count []int
}

// evolve searches g and returns every candidate it evaluated, each predicted, and
// whether each passed the filters. dst is reused for the candidates.
func (p *Problem) evolve(g *grid, dst []failure.Option) ([]failure.Option, []bool) {
	cfg := p.Search.withDefaults()
	k := len(p.Scorers)
	e := &evolution{p: p, g: g, cfg: cfg, seen: make(map[uint64]int32, cfg.Budget),
		cands: slices.Grow(dst[:0], cfg.Budget), points: make([][numDims]int, 0, cfg.Budget),
		ok: make([]bool, 0, cfg.Budget), scores: make([][]float64, 0, cfg.Budget), flat: make([]float64, 0, cfg.Budget*k),
		rng: rand.New(rand.NewPCG(cfg.Seed, uint64(g.size())))} //nolint:gosec // search, not secrets

	// The first generation: the failed configuration, its most generous neighbour on
	// each dimension, and random points.
	var pop []int
	add := func(at [numDims]int) {
		if i, isNew := e.eval(at); isNew {
			pop = append(pop, i)
		}
	}
	var origin [numDims]int
	origin[dimGPUType] = max(0, slices.Index(g.types, g.base.Resources.GPUType))
	add(origin)
	for d := range numDims {
		at := origin
		at[d] = g.dims[d] - 1
		add(at)
	}
	for tries := 0; len(pop) < cfg.Population && tries < 4*cfg.Population; tries++ {
		add(e.random())
	}

	pop, rank, crowd := e.survivors(pop)
	for stall := 0; len(e.cands) < cfg.Budget && stall < 3; {
		better := func(a, b int) int { // index into pop of the tournament's winner
			if rank[a] != rank[b] {
				if rank[a] < rank[b] {
					return a
				}
				return b
			}
			if crowd[a] >= crowd[b] {
				return a
			}
			return b
		}
		pick := func() int { return better(e.rng.IntN(len(pop)), e.rng.IntN(len(pop))) }
		var children []int
		for tries := 0; len(children) < cfg.Population && tries < 4*cfg.Population && len(e.cands) < cfg.Budget; tries++ {
			child := e.mutate(e.crossover(e.points[pop[pick()]], e.points[pop[pick()]]))
			if i, isNew := e.eval(child); isNew {
				children = append(children, i)
			}
		}
		if len(children) == 0 {
			stall++
			continue
		}
		stall = 0
		pop, rank, crowd = e.survivors(append(pop, children...))
	}
	return e.cands, e.ok
}

// eval evaluates the candidate at a point once; it reports the candidate's index and
// whether it is new.
func (e *evolution) eval(at [numDims]int) (int, bool) {
	key := uint64(0)
	for d, n := range e.g.dims {
		key = key*uint64(n) + uint64(at[d]) //nolint:gosec // sizes and indices are small and not negative
	}
	if i, ok := e.seen[key]; ok {
		return int(i), false
	}
	o := e.g.option(at)
	feasible := e.p.evaluate(&o)
	start := len(e.flat)
	for _, s := range e.p.Scorers {
		v := math.Inf(1)
		if feasible {
			if v = s.Score(&o); math.IsNaN(v) {
				v = math.Inf(1)
			}
		}
		e.flat = append(e.flat, v)
	}
	sc := e.flat[start:len(e.flat):len(e.flat)]
	i := len(e.cands)
	e.seen[key] = int32(i) //nolint:gosec // i < Budget
	e.points = append(e.points, at)
	e.cands, e.ok, e.scores = append(e.cands, o), append(e.ok, feasible), append(e.scores, sc)
	return i, true
}

func (e *evolution) random() [numDims]int {
	var at [numDims]int
	for d, n := range e.g.dims {
		at[d] = e.rng.IntN(n)
	}
	return at
}

// crossover takes each dimension from one parent or the other.
func (e *evolution) crossover(a, b [numDims]int) [numDims]int {
	bits := e.rng.Uint64()
	for d := range numDims {
		if bits&(1<<d) != 0 {
			a[d] = b[d]
		}
	}
	return a
}

// mutate changes each dimension with probability 1/(dimensions that vary): half the
// time a step of up to 3 to a neighbour (the dimensions are ordered), half the time
// anywhere.
func (e *evolution) mutate(at [numDims]int) [numDims]int {
	varying := 0
	for _, n := range e.g.dims {
		if n > 1 {
			varying++
		}
	}
	for d, n := range e.g.dims {
		if n < 2 || e.rng.IntN(varying) != 0 {
			continue
		}
		if e.rng.IntN(2) == 0 {
			step := 1 + e.rng.IntN(3)
			if e.rng.IntN(2) == 0 {
				step = -step
			}
			at[d] = min(max(at[d]+step, 0), n-1)
		} else {
			at[d] = e.rng.IntN(n)
		}
	}
	return at
}

// survivors keeps the population's size of candidates: whole non-dominated fronts,
// best first, and of the front that does not fit whole, the least crowded. It returns
// them with the rank of their front and their crowding distance in it.
func (e *evolution) survivors(cands []int) (pop, rank []int, crowd []float64) {
	n := min(len(cands), e.cfg.Population)
	pop, rank, crowd = make([]int, 0, n), make([]int, 0, n), make([]float64, 0, n)
	for r, f := range e.fronts(cands) {
		d := e.crowding(f)
		if len(pop)+len(f) > n {
			order := make([]int, len(f))
			for i := range order {
				order[i] = i
			}
			slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(d[b], d[a]) })
			order = order[:n-len(pop)]
			kept, keptD := make([]int, len(order)), make([]float64, len(order))
			for i, j := range order {
				kept[i], keptD[i] = f[j], d[j]
			}
			f, d = kept, keptD
		}
		for i := range f {
			pop, rank, crowd = append(pop, f[i]), append(rank, r), append(crowd, d[i])
		}
		if len(pop) == n {
			break
		}
	}
	return pop, rank, crowd
}

// fronts sorts candidates into non-dominated fronts, best first.
func (e *evolution) fronts(cands []int) [][]int {
	if len(e.p.Scorers) == 2 {
		return e.fronts2(cands)
	}
	n := len(cands)
	// beats[i*n+j]: candidate i dominates j; count[j]: how many dominate j.
	e.beats = slices.Grow(e.beats[:0], n*n)[:n*n]
	e.count = slices.Grow(e.count[:0], n)[:n]
	clear(e.beats)
	clear(e.count)
	for i := range n {
		for j := i + 1; j < n; j++ {
			a, b := e.scores[cands[i]], e.scores[cands[j]]
			switch {
			case dominates(a, b):
				e.beats[i*n+j] = true
				e.count[j]++
			case dominates(b, a):
				e.beats[j*n+i] = true
				e.count[i]++
			}
		}
	}
	var out [][]int
	current := make([]int, 0, n)
	for i := range n {
		if e.count[i] == 0 {
			current = append(current, i)
		}
	}
	for len(current) > 0 {
		front := make([]int, len(current))
		var next []int
		for k, i := range current {
			front[k] = cands[i]
			for j, beaten := range e.beats[i*n : (i+1)*n] {
				if beaten {
					if e.count[j]--; e.count[j] == 0 {
						next = append(next, j)
					}
				}
			}
		}
		out = append(out, front)
		current = next
	}
	return out
}

// fronts2 is fronts for two objectives. Sorted by the first objective, each point
// joins the first front whose newest member (the lowest second score in it) does not
// dominate it: its newest member is the only one that could.
func (e *evolution) fronts2(cands []int) [][]int {
	order := slices.Clone(cands)
	slices.SortFunc(order, func(x, y int) int { return compareScores(e.scores[x], e.scores[y]) })
	var out [][]int
	for _, c := range order {
		s := e.scores[c]
		k := 0
		for ; k < len(out); k++ {
			q := e.scores[out[k][len(out[k])-1]]
			if !dominates(q, s) {
				break
			}
		}
		if k == len(out) {
			out = append(out, nil)
		}
		out[k] = append(out[k], c)
	}
	return out
}

// crowding is each front member's crowding distance: the sum over objectives of the
// gap between its neighbours, scaled by the front's range; the ends count infinite.
func (e *evolution) crowding(front []int) []float64 {
	d := make([]float64, len(front))
	order := make([]int, len(front))
	for k := range e.p.Scorers {
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(e.scores[front[a]][k], e.scores[front[b]][k]) })
		lo, hi := e.scores[front[order[0]]][k], e.scores[front[order[len(order)-1]]][k]
		d[order[0]], d[order[len(order)-1]] = math.Inf(1), math.Inf(1)
		if !(hi > lo) || math.IsInf(hi-lo, 0) {
			continue
		}
		for i := 1; i+1 < len(order); i++ {
			d[order[i]] += (e.scores[front[order[i+1]]][k] - e.scores[front[order[i-1]]][k]) / (hi - lo)
		}
	}
	return d
}

package models

import (
	"cmp"
	"math"
	"slices"
)

// Bounds is what the limits a job's runs were given, and whether each was enough,
// say of its need for a resource when no run's peak was measured (a cluster without
// metrics): a run that succeeded at a limit needed no more than it, one that ran out
// needed more. Each past run bounds its need to an interval, the current run's floor
// bounds its own from below, and the needs are taken to follow a lognormal whose
// median grows by a constant factor a run. Bounds holds the posterior over the
// median, spread and growth of that lognormal, on a grid, given every interval, and
// gives the chance that the current run's need is at most a candidate limit.
//
// The intervals are censored observations, not measurements: a run that succeeded at
// 8 GiB may have needed 2. The posterior keeps that uncertainty (a run known only to
// fit in 8 GiB spreads its need over everything below), which is why the chance
// comes from the whole posterior rather than from a point estimate.
type Bounds struct {
	// Runs is the number of past runs whose outcomes bound the need.
	Runs int
	// Floor is the limit the current run ran out at (0: it did not), in the
	// resource's unit.
	Floor float64
	comps []component
}

// component is one cell of the posterior: a lognormal of the current run's need (the
// median's log mu at the current run, the sigma of its log), its posterior weight,
// and the log of its chance to exceed the floor.
type component struct {
	mu, sigma, w, logAbove float64
}

// bound is one past run's interval: its need was above lo (0: no lower bound) and at
// most hi (+Inf: no upper bound); run is its position among the runs, oldest first.
type bound struct {
	run    int
	lo, hi float64
}

// The grids of the posterior. The spreads cover a job whose needs barely vary to one
// whose needs vary by half from run to run; the growths, a stable job to one whose
// needs grow 4% a run, with a prior that favours the stable.
var (
	boundSigmas  = []float64{0.03, 0.06, 0.12, 0.2, 0.35}
	boundGrowths = []float64{0, 0.015, 0.04}
	growthPrior  = []float64{0.5, 0.25, 0.25}
)

// maxMuCells bounds the grid of medians per spread and growth.
const maxMuCells = 200

// fitBounds computes the posterior from the past runs' intervals and the current run's
// floor (0: none); current is the current run's position. Without a past run that
// succeeded (an upper bound), the need could be anything above the floor and there
// is nothing to fit: it returns nil.
func fitBounds(obs []bound, current int, floor float64) *Bounds {
	lo, hi := math.Inf(1), math.Inf(-1)
	upper := false
	for _, o := range obs {
		if o.hi > 0 && !math.IsInf(o.hi, 1) {
			upper = true
			lo, hi = math.Min(lo, math.Log(o.hi)), math.Max(hi, math.Log(o.hi))
		}
		if o.lo > 0 {
			lo, hi = math.Min(lo, math.Log(o.lo)), math.Max(hi, math.Log(o.lo))
		}
	}
	if !upper {
		return nil
	}
	lf := math.Inf(-1)
	if floor > 0 {
		lf = math.Log(floor)
		lo, hi = math.Min(lo, lf), math.Max(hi, lf)
	}
	// The medians at the current run, on one range for every spread and growth (the
	// prior on the median is uniform on it): from below the lowest bound to above the
	// highest moved by the most growth since the oldest run, with room for the widest
	// spread on either side.
	oldest := current
	for _, o := range obs {
		oldest = min(oldest, o.run)
	}
	sMax, gMax := boundSigmas[len(boundSigmas)-1], boundGrowths[len(boundGrowths)-1]
	muLo := lo - 2.5*sMax - 0.05
	muHi := hi + gMax*float64(current-oldest) + 2.5*sMax + 0.05
	// The intervals in logs, with the runs since each; without growth, runs with the
	// same interval count once, with their number.
	type logBound struct{ lo, hi, since, n float64 }
	logs := make([]logBound, len(obs))
	for i, o := range obs {
		logs[i] = logBound{lo: math.Inf(-1), hi: math.Inf(1), since: float64(current - o.run), n: 1}
		if o.lo > 0 {
			logs[i].lo = math.Log(o.lo)
		}
		if o.hi > 0 && !math.IsInf(o.hi, 1) {
			logs[i].hi = math.Log(o.hi)
		}
	}
	var still []logBound
	for _, l := range logs {
		j := slices.IndexFunc(still, func(m logBound) bool { return m.lo == l.lo && m.hi == l.hi })
		if j < 0 {
			still = append(still, l)
		} else {
			still[j].n++
		}
	}
	b := &Bounds{Runs: len(obs), Floor: floor}
	best := math.Inf(-1)
	for gi, g := range boundGrowths {
		moving := logs
		if g == 0 {
			moving = still
		}
		for _, s := range boundSigmas {
			// Steps of half the spread, at most maxMuCells; each cell weighs its width.
			n := min(maxMuCells, int(math.Ceil((muHi-muLo)/(s/2)))+1)
			step := (muHi - muLo) / float64(n-1)
			logPrior := math.Log(growthPrior[gi]) + math.Log(step)
			for i := range n {
				mu := muLo + float64(i)*step
				ll := logPrior
				for _, o := range moving {
					// The run's median was lower by the growth since.
					m := mu - g*o.since
					ll += o.n * logInterval((o.lo-m)/s, (o.hi-m)/s)
				}
				above := logUpper((lf - mu) / s)
				ll += above
				if math.IsInf(ll, -1) || math.IsNaN(ll) {
					continue
				}
				best = math.Max(best, ll)
				b.comps = append(b.comps, component{mu: mu, sigma: s, w: ll, logAbove: above})
			}
		}
	}
	if len(b.comps) == 0 {
		return nil
	}
	// Normalise, and keep the cells that carry the posterior: the lightest, which
	// together weigh less than 0.1%, go.
	total := 0.0
	for i := range b.comps {
		b.comps[i].w = math.Exp(b.comps[i].w - best)
		total += b.comps[i].w
	}
	slices.SortFunc(b.comps, func(x, y component) int { return cmp.Compare(y.w, x.w) })
	kept := 0.0
	for i := range b.comps {
		b.comps[i].w /= total
		kept += b.comps[i].w
		if kept >= 0.999 {
			b.comps = b.comps[:i+1]
			break
		}
	}
	for i := range b.comps {
		b.comps[i].w /= kept
	}
	return b
}

// P is the chance that the current run's need is at most v: 0 at or below its floor.
func (b *Bounds) P(v float64) float64 {
	if v <= 0 || v <= b.Floor {
		return 0
	}
	lv := math.Log(v)
	above := 0.0
	for _, c := range b.comps {
		above += c.w * math.Exp(logUpper((lv-c.mu)/c.sigma)-c.logAbove)
	}
	return clamp(1-above, 0, 1)
}

// Quantile is the need the current run stays at or below with chance q (0 < q < 1),
// found by bisection on P (to 0.1%).
func (b *Bounds) Quantile(q float64) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range b.comps {
		lo, hi = math.Min(lo, c.mu-8*c.sigma), math.Max(hi, c.mu+8*c.sigma)
	}
	if b.Floor > 0 {
		lo = math.Max(lo, math.Log(b.Floor))
	}
	if len(b.comps) == 0 || lo >= hi {
		return b.Floor
	}
	for hi-lo > 0.001 {
		mid := (lo + hi) / 2
		if b.P(math.Exp(mid)) < q {
			lo = mid
		} else {
			hi = mid
		}
	}
	return math.Exp(hi)
}

// logInterval is the log of the chance that a standard normal falls in (a, c]; an
// infinite bound leaves that side open.
func logInterval(a, c float64) float64 {
	switch {
	case math.IsInf(a, -1):
		return logUpper(-c) // Φ(c) = Q(-c)
	case math.IsInf(c, 1):
		return logUpper(a)
	case a > 0:
		// Both in the upper tail: Q(a) - Q(c), without cancellation.
		la, lc := logUpper(a), logUpper(c)
		return la + math.Log1p(-math.Exp(lc-la))
	default:
		// Φ(c) - Φ(a) = Q(-c) - Q(-a), with Q(-a) at most a half.
		lc, la := logUpper(-c), logUpper(-a)
		return lc + math.Log1p(-math.Exp(la-lc))
	}
}

// logUpper is log Q(z), the log of the standard normal's upper tail, accurate far
// into the tail: interpolated in a table (to 1e-5) where it is smooth, by the Mills
// ratio beyond.
func logUpper(z float64) float64 {
	switch {
	case math.IsNaN(z):
		return math.NaN()
	case z <= -upperTableEdge:
		return 0
	case z >= upperTableEdge:
		// Q(z) ~ φ(z)/z (1 - 1/z²).
		if math.IsInf(z, 1) {
			return math.Inf(-1)
		}
		return -z*z/2 - math.Log(z*math.Sqrt(2*math.Pi)) + math.Log1p(-1/(z*z))
	}
	f := (z + upperTableEdge) / upperTableStep
	i := int(f)
	frac := f - float64(i)
	return upperTable[i] + frac*(upperTable[i+1]-upperTable[i])
}

// logUpperExact is log Q(z) by the complementary error function.
func logUpperExact(z float64) float64 { return math.Log(0.5 * math.Erfc(z/math.Sqrt2)) }

// The table of logUpper: log Q on [-edge, edge] in steps of step.
const (
	upperTableEdge = 30.0
	upperTableStep = 0.005
)

var upperTable = func() []float64 {
	n := int(2*upperTableEdge/upperTableStep) + 2
	t := make([]float64, n)
	for i := range t {
		t[i] = logUpperExact(-upperTableEdge + float64(i)*upperTableStep)
	}
	return t
}()

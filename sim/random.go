package sim

import (
	"math"
	"math/rand/v2"
)

// rng returns a generator determined by the scenario seed and the given keys, so that
// every policy meets the same luck on the same attempt of the same run (common random
// numbers make the comparison between policies fair).
func rng(seed uint64, keys ...uint64) *rand.Rand {
	h := seed ^ 0x9e3779b97f4a7c15
	for _, k := range keys {
		h = splitmix(h ^ k)
	}
	return rand.New(rand.NewPCG(h, splitmix(h)))
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// draw samples the lognormal.
func (d LogNormal) draw(r *rand.Rand) float64 {
	return d.Median * math.Exp(d.Sigma*r.NormFloat64())
}

// pick returns a value of the mix with probability proportional to its weight.
func pick[T any](r *rand.Rand, mix []Weighted[T]) T {
	total := 0.0
	for _, w := range mix {
		total += w.Weight
	}
	x := r.Float64() * total
	for _, w := range mix {
		if x < w.Weight {
			return w.Value
		}
		x -= w.Weight
	}
	return mix[len(mix)-1].Value
}

// uniform returns a value in [lo, hi).
func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

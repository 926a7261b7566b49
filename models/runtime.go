package models

import (
	"errors"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/autofix/autofix/failure"
)

// Linear is a linear regression y = w·x, x starting with a constant 1.
type Linear struct {
	Weights []float64 `json:"weights"`
}

const runtimeFeatures = 6

// runtimeFeatureVec describes how a candidate differs from the failed configuration
// in what sets the speed: GPU count, GPU speed, checkpointing, precision, micro-batch
// (for GPU jobs) or cores (for the others).
func runtimeFeatureVec(c *Context, res failure.Resources, tu Tunables, cat *failure.Catalogue, x []float64) []float64 {
	x = append(x[:0], 1)
	base := c.Failed
	if base.GPU > 0 && res.GPU > 0 {
		x = append(x,
			math.Log(float64(base.GPU)/float64(res.GPU)),
			math.Log(cat.Speed(base.GPUType)/cat.Speed(res.GPUType)),
			boolDiff(tu.Checkpointing, c.Tun.Checkpointing),
			boolDiff(tu.Precision == "fp32", c.Tun.Precision == "fp32"),
			logRatio(c.Tun.MicroBatch, tu.MicroBatch))
		return x
	}
	return append(x, 0, 0, 0, 0, logRatio(int(base.CPUMillis), int(res.CPUMillis)))
}

func boolDiff(a, b bool) float64 {
	switch {
	case a && !b:
		return 1
	case b && !a:
		return -1
	}
	return 0
}

func logRatio(a, b int) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return math.Log(float64(a) / float64(b))
}

// Predict returns the predicted log runtime ratio.
func (l *Linear) Predict(x []float64) float64 {
	s := 0.0
	for i, w := range l.Weights {
		s += w * x[i]
	}
	return s
}

// fitLinear solves ridge-regularised least squares.
func fitLinear(xs [][]float64, ys []float64, lambda float64) (*Linear, error) {
	if len(xs) == 0 {
		return nil, errors.New("no examples")
	}
	d := len(xs[0])
	a := mat.NewDense(len(xs), d, nil)
	for i, x := range xs {
		a.SetRow(i, x)
	}
	var ata mat.Dense
	ata.Mul(a.T(), a)
	for j := 1; j < d; j++ {
		ata.Set(j, j, ata.At(j, j)+lambda)
	}
	// A feature that never varies would make the system singular: pin it to 0.
	for j := 1; j < d; j++ {
		if ata.At(j, j) == lambda {
			ata.Set(j, j, 1)
		}
	}
	var aty mat.VecDense
	aty.MulVec(a.T(), mat.NewVecDense(len(ys), ys))
	var w mat.VecDense
	if err := w.SolveVec(&ata, &aty); err != nil {
		return nil, err
	}
	return &Linear{Weights: w.RawVector().Data}, nil
}

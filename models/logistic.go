package models

import (
	"errors"
	"math"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/optimize"
)

// Logistic is a logistic regression: P(y=1 | x) = σ(w·x), x starting with a constant 1.
type Logistic struct {
	Weights []float64 `json:"weights"`
}

// Predict returns P(y=1 | x).
func (m *Logistic) Predict(x []float64) float64 {
	return sigmoid(floats.Dot(m.Weights, x))
}

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// fitLogistic fits weights by maximum likelihood with an L2 penalty lambda (not on
// the intercept), with L-BFGS and the analytic gradient.
func fitLogistic(xs [][]float64, ys []float64, lambda float64) (*Logistic, error) {
	if len(xs) == 0 {
		return nil, errors.New("no examples")
	}
	d := len(xs[0])
	n := float64(len(xs))
	problem := optimize.Problem{
		Func: func(w []float64) float64 {
			loss := 0.0
			for i, x := range xs {
				z := floats.Dot(w, x)
				// log(1 + e^z) - y z, computed stably.
				loss += softplus(z) - ys[i]*z
			}
			for j := 1; j < d; j++ {
				loss += lambda / 2 * w[j] * w[j] * n
			}
			return loss / n
		},
		Grad: func(grad, w []float64) {
			for j := range grad {
				grad[j] = 0
			}
			for i, x := range xs {
				r := sigmoid(floats.Dot(w, x)) - ys[i]
				floats.AddScaled(grad, r, x)
			}
			for j := range grad {
				grad[j] /= n
				if j > 0 {
					grad[j] += lambda * w[j]
				}
			}
		},
	}
	res, err := optimize.Minimize(problem, make([]float64, d), &optimize.Settings{GradientThreshold: 1e-7, MajorIterations: 500}, &optimize.LBFGS{})
	if err != nil && res == nil {
		return nil, err
	}
	return &Logistic{Weights: res.X}, nil
}

func softplus(z float64) float64 {
	if z > 30 {
		return z
	}
	return math.Log1p(math.Exp(z))
}

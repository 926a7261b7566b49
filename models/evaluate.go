package models

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/gonum/integrate"
	"gonum.org/v1/gonum/stat"
)

// Calibration measures how good a probabilistic classifier's probabilities are.
type Calibration struct {
	N int `json:"n"`
	// Positives is how many examples were labelled 1.
	Positives int `json:"positives"`
	// AUC is the area under the ROC curve (0 when the examples are all of one class,
	// which leaves it undefined); Brier the mean squared error of the probabilities;
	// LogLoss the mean negative log-likelihood.
	AUC     float64 `json:"auc"`
	Brier   float64 `json:"brier"`
	LogLoss float64 `json:"logLoss"`
	// Reliability bins the predictions: in a calibrated model each bin's observed rate
	// is close to its mean prediction.
	Reliability []Bin `json:"reliability"`
}

// Bin is one row of a reliability table.
type Bin struct {
	Lo, Hi    float64 `json:"-"`
	Count     int     `json:"count"`
	Predicted float64 `json:"predicted"`
	Observed  float64 `json:"observed"`
}

// calibrate evaluates predictions p against labels y (0 or 1).
func calibrate(p, y []float64) Calibration {
	c := Calibration{N: len(p)}
	if len(p) == 0 {
		return c
	}
	for i := range p {
		c.Brier += (p[i] - y[i]) * (p[i] - y[i])
		q := math.Min(math.Max(p[i], 1e-9), 1-1e-9)
		c.LogLoss -= y[i]*math.Log(q) + (1-y[i])*math.Log(1-q)
		if y[i] == 1 {
			c.Positives++
		}
	}
	c.Brier /= float64(len(p))
	c.LogLoss /= float64(len(p))
	if c.Positives > 0 && c.Positives < c.N {
		c.AUC = auc(p, y)
	}
	for i := 0; i+1 < len(binEdges); i++ {
		b := Bin{Lo: binEdges[i], Hi: binEdges[i+1]}
		for j := range p {
			if p[j] >= b.Lo && p[j] < b.Hi {
				b.Count++
				b.Predicted += p[j]
				b.Observed += y[j]
			}
		}
		if b.Count > 0 {
			b.Predicted /= float64(b.Count)
			b.Observed /= float64(b.Count)
			c.Reliability = append(c.Reliability, b)
		}
	}
	return c
}

// binEdges are the edges of the reliability table's bins (the last holds 1).
var binEdges = []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0000001}

// BinEdges returns the edges of the reliability table's bin that holds p, a
// probability: a saved table keeps each bin's mean prediction, which its bin holds,
// and not its edges. The last bin's upper edge is given as 1.
func BinEdges(p float64) (lo, hi float64) {
	for i := 0; i+1 < len(binEdges); i++ {
		if p < binEdges[i+1] {
			return binEdges[i], math.Min(binEdges[i+1], 1)
		}
	}
	return binEdges[len(binEdges)-2], 1
}

// Calibrate scores probabilities p against outcomes y (0 or 1, as many): AUC, Brier
// score, log-loss and the reliability table, as the evaluation of training does.
func Calibrate(p, y []float64) Calibration { return calibrate(p, y) }

// ECE is the expected calibration error: the gap between the mean prediction and
// the observed rate of each bin of the reliability table, weighted by the bin's
// count (0 without examples).
func (c Calibration) ECE() float64 {
	n, sum := 0, 0.0
	for _, b := range c.Reliability {
		n += b.Count
		sum += float64(b.Count) * math.Abs(b.Predicted-b.Observed)
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// auc is the area under the ROC curve (gonum's stat.ROC needs sorted scores).
func auc(p, y []float64) float64 {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return p[idx[a]] < p[idx[b]] })
	scores := make([]float64, len(p))
	classes := make([]bool, len(p))
	for i, j := range idx {
		scores[i], classes[i] = p[j], y[j] == 1
	}
	tpr, fpr, _ := stat.ROC(nil, scores, classes, nil)
	return integrate.Trapezoidal(fpr, tpr)
}

// Write prints the calibration as a table.
func (c Calibration) Write(w io.Writer, name string) {
	aucText := "n/a (one class)"
	if c.Positives > 0 && c.Positives < c.N {
		aucText = fmt.Sprintf("%.3f", c.AUC)
	}
	fmt.Fprintf(w, "%s: n=%d positives=%d AUC=%s Brier=%.4f log-loss=%.4f\n", name, c.N, c.Positives, aucText, c.Brier, c.LogLoss)
	fmt.Fprintf(w, "  %-11s %7s %9s %8s\n", "bin", "count", "predicted", "observed")
	for _, b := range c.Reliability {
		fmt.Fprintf(w, "  [%.2f,%.2f) %7d %9.3f %8.3f\n", b.Lo, math.Min(b.Hi, 1), b.Count, b.Predicted, b.Observed)
	}
}

// Evaluation is how the models score on examples held out from their training.
type Evaluation struct {
	TrainExamples int         `json:"trainExamples"`
	TestExamples  int         `json:"testExamples"`
	Memory        Calibration `json:"memory"`
	Disk          Calibration `json:"disk"`
	GPU           Calibration `json:"gpu"`
	Deadline      Calibration `json:"deadline"`
	// Bounds is the calibration of the chances the bounds give (memory, local storage
	// and GPU memory together) on the retries whose need was known only from the
	// limits earlier runs were given, no peak having been measured; the four above
	// score the chance a prediction uses, from the bounds or from the model.
	Bounds Calibration `json:"bounds"`
	// Success is the calibration of the whole P(success) on every held-out retry.
	Success Calibration `json:"success"`
	// RuntimeMAE is the mean absolute error of predicted runtimes, as a share of the
	// actual runtime (0.1 is 10%), over successful held-out retries of jobs with a
	// successful run to start from.
	RuntimeMAE float64 `json:"runtimeMAE"`
	RuntimeN   int     `json:"runtimeN"`
	// Kept names the models kept from TrainOptions.Prior for want of examples
	// (memory, disk, gpu, deadline, runtime, success).
	Kept []string `json:"kept,omitempty"`
	// Window, for examples split by time, says when their failures were received.
	Window *Window `json:"window,omitempty"`
}

// Window is when the failures of a time-ordered split were received: training on
// the earlier, evaluation on the later.
type Window struct {
	TrainFrom time.Time `json:"trainFrom"`
	TrainTo   time.Time `json:"trainTo"`
	TestFrom  time.Time `json:"testFrom"`
	TestTo    time.Time `json:"testTo"`
	// Simulated is how many of the training examples are simulated retries, which
	// have no time.
	Simulated int `json:"simulated,omitempty"`
}

// Write prints the evaluation.
func (e *Evaluation) Write(w io.Writer) {
	if win := e.Window; win != nil {
		day := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
		fmt.Fprintf(w, "trained on %d retries received %s to %s", e.TrainExamples-win.Simulated, day(win.TrainFrom), day(win.TrainTo))
		if win.Simulated > 0 {
			fmt.Fprintf(w, " and %d simulated", win.Simulated)
		}
		fmt.Fprintf(w, ",\nevaluated on the %d received after them, %s to %s\n", e.TestExamples, day(win.TestFrom), day(win.TestTo))
	} else {
		fmt.Fprintf(w, "trained on %d retries, evaluated on %d retries of held-out jobs\n", e.TrainExamples, e.TestExamples)
	}
	if len(e.Kept) > 0 {
		fmt.Fprintf(w, "too few examples to fit, kept from the prior: %s\n", strings.Join(e.Kept, ", "))
	}
	fmt.Fprintln(w)
	e.Success.Write(w, "P(success), all retries")
	e.Memory.Write(w, "memory is enough")
	e.Disk.Write(w, "local storage is enough")
	e.GPU.Write(w, "GPU memory is enough")
	e.Deadline.Write(w, "deadline is enough")
	e.Bounds.Write(w, "the bounds' chance (no peak measured), of the three above")
	fmt.Fprintf(w, "runtime: mean absolute error %.1f%% over %d successful retries\n", 100*e.RuntimeMAE, e.RuntimeN)
}

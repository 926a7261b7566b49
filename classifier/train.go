package classifier

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/optimize"

	"github.com/autofix/autofix/failure"
)

// TrainOptions configure Train; zero values mean the defaults.
type TrainOptions struct {
	// Buckets is the size of the hash space of features, a power of two (default
	// 2^18).
	Buckets uint32 `json:"buckets"`
	// MinDocFreq is how many training failures must have a feature for it to get a
	// weight (default 2).
	MinDocFreq int `json:"minDocFreq"`
	// L2 is the weight of the L2 penalty on the feature weights (default 1e-2).
	L2 float64 `json:"l2"`
	// Folds is the number of cross-validation folds, grouped by source thread, that
	// calibrate the model and choose its thresholds (default 5).
	Folds int `json:"folds"`
	// MaxIterations bounds L-BFGS's iterations per fit (default 300).
	MaxIterations int `json:"maxIterations"`
	// TargetFalseRetry is the share of failures no retry can fix that the retry
	// threshold may call retryable on the held-out folds (default 0.05).
	TargetFalseRetry float64 `json:"targetFalseRetry"`
	// MinConfidence is the calibrated probability below which the model abstains
	// (default 0.3).
	MinConfidence float64 `json:"minConfidence"`
	// RuleFeatures makes the rules that matched features of the model.
	RuleFeatures bool `json:"ruleFeatures"`
	// ClassBalance weighs each example's category loss by (n / (k * n_c))^ClassBalance,
	// n_c the examples of its category among n of k categories: 0 weighs all alike,
	// 1 makes every category count as much as any other.
	ClassBalance float64 `json:"classBalance,omitempty"`
	// AmbiguousWeight weighs the loss of an example whose two labellers disagreed
	// (Labelled.Ambiguous), in (0, 1]; 0 means 1, all examples alike. The held-out
	// calibration and the retry threshold still count every example fully, so a
	// model fitted mostly to the agreed labels is judged on all of them.
	AmbiguousWeight float64 `json:"ambiguousWeight,omitempty"`
}

func (o *TrainOptions) defaults() error {
	o.Buckets = cmp.Or(o.Buckets, 1<<18)
	o.MinDocFreq = cmp.Or(o.MinDocFreq, 2)
	o.L2 = cmp.Or(o.L2, 1e-2)
	o.Folds = cmp.Or(o.Folds, 5)
	o.MaxIterations = cmp.Or(o.MaxIterations, 300)
	o.TargetFalseRetry = cmp.Or(o.TargetFalseRetry, 0.05)
	o.MinConfidence = cmp.Or(o.MinConfidence, 0.3)
	switch {
	case o.Buckets < 2 || o.Buckets > maxModelBuckets || o.Buckets&(o.Buckets-1) != 0:
		return fmt.Errorf("buckets %d: want a power of two up to %d", o.Buckets, maxModelBuckets)
	case o.MinDocFreq < 1, o.Folds < 2, o.Folds > maxFolds, o.MaxIterations < 1:
		return fmt.Errorf("options %+v: minDocFreq and maxIterations must be positive, folds 2 to %d", *o, maxFolds)
	case !(o.L2 > 0), !(o.TargetFalseRetry > 0 && o.TargetFalseRetry < 1), !(o.MinConfidence >= 0 && o.MinConfidence < 1),
		!(o.ClassBalance >= 0 && o.ClassBalance <= 1), !(o.AmbiguousWeight >= 0 && o.AmbiguousWeight <= 1):
		return fmt.Errorf("options %+v: l2 > 0, targetFalseRetry in (0, 1), minConfidence in [0, 1), classBalance and ambiguousWeight in [0, 1]", *o)
	}
	return nil
}

// maxFolds bounds the cross-validation folds.
const maxFolds = 100

// TrainReport is what cross-validation found while training a model: its figures on
// the held-out folds, the reliability of its confidences and the trade-off between
// false and missed retries that chose its retry threshold.
type TrainReport struct {
	CV CVFigures
	// Reliability bins the held-out category confidences; RetryReliability the
	// held-out P(retry helps).
	Reliability      []ReliabilityBin
	RetryReliability []ReliabilityBin
	// RetryCurve is the false-retry and missed-retry rates of each threshold.
	RetryCurve     []CurvePoint
	RetryThreshold float64
	Temperature    float64
	Features       int
}

// ReliabilityBin is one bin of a reliability table: the predictions whose
// probability fell in [Low, High), their mean probability and how often they were
// right.
type ReliabilityBin struct {
	Low, High   float64
	Count       int
	MeanPredict float64
	Observed    float64
}

// CurvePoint is the held-out retry decisions at one threshold.
type CurvePoint struct {
	Threshold      float64
	FalseRetryRate float64 // of the failures no retry can fix, the share retried
	MissedRate     float64 // of the retryable failures, the share not retried
}

// example is a labelled failure as the trainer sees it.
type example struct {
	feats []uint32
	class int
	retry bool
	// weight scales the example's loss in a fit (1, or TrainOptions.AmbiguousWeight).
	weight float64
}

// Train trains a model on labelled failures. base supplies the knowledge tables and,
// with RuleFeatures, the rules whose matches are features; its own model is not used.
func Train(base *Classifier, items []Labelled, opts TrainOptions) (*Model, *TrainReport, error) {
	if err := opts.defaults(); err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	if len(items) < 2*opts.Folds {
		return nil, nil, fmt.Errorf("train: %d examples: want at least %d", len(items), 2*opts.Folds)
	}
	seen := map[failure.Category]bool{}
	for i, it := range items {
		if !it.Expected.Category.Valid() {
			return nil, nil, fmt.Errorf("train: example %d: category %q is not a category of the taxonomy", i, it.Expected.Category)
		}
		seen[it.Expected.Category] = true
	}
	var classes []failure.Category
	for _, c := range failure.Categories() {
		if seen[c] {
			classes = append(classes, c)
		}
	}
	if len(classes) < 2 {
		return nil, nil, errors.New("train: want examples of at least two categories")
	}
	plain := base.WithModel(nil)
	exs := make([]example, len(items))
	for i := range items {
		it := &items[i]
		feats := plain.modelFeatures(&it.Event, opts.RuleFeatures)
		exs[i] = example{feats: feats, class: slices.Index(classes, it.Expected.Category), retry: it.Expected.Retryable, weight: 1}
		if it.Ambiguous && opts.AmbiguousWeight > 0 {
			exs[i].weight = opts.AmbiguousWeight
		}
	}

	// Held-out scores: each fold predicted by a fit on the others.
	nc := len(classes)
	oof := make([][]float64, len(exs)) // per example: class logits, then the retry logit
	folds := assignFolds(items, opts.Folds)
	for k := range opts.Folds {
		var train, test []int
		for i, f := range folds {
			if f == k {
				test = append(test, i)
			} else {
				train = append(train, i)
			}
		}
		f, err := fit(exs, train, nc, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("train: fold %d: %w", k, err)
		}
		for _, i := range test {
			oof[i] = f.logits(exs[i].feats)
		}
	}
	rep := &TrainReport{}
	rep.Temperature = fitTemperature(oof, exs, nc)
	a, b := fitPlatt(oof, exs, nc)
	probs := make([][]float64, len(exs))
	pRetries := make([]float64, len(exs))
	for i, z := range oof {
		probs[i] = make([]float64, nc)
		softmax(z[:nc], rep.Temperature, probs[i])
		pRetries[i] = pRetry(classes, probs[i], sigmoid(a*z[nc]+b))
	}
	rep.RetryCurve = retryCurve(probs, pRetries, exs, classes, opts.MinConfidence)
	rep.RetryThreshold = chooseThreshold(rep.RetryCurve, opts.TargetFalseRetry)
	rep.Reliability, rep.RetryReliability = reliability(probs, pRetries, exs)
	rep.CV = cvFigures(probs, pRetries, exs, classes, rep.RetryThreshold, opts.MinConfidence, opts.Folds)

	all := make([]int, len(exs))
	for i := range all {
		all[i] = i
	}
	f, err := fit(exs, all, nc, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	rep.Features = len(f.cols)
	m := f.model(classes, opts)
	m.temperature, m.retryA, m.retryB, m.retryThreshold = rep.Temperature, a, b, rep.RetryThreshold
	if opts.RuleFeatures {
		m.rulesDigest = base.rules.Digest()
	}
	cv := rep.CV
	m.info = ModelInfo{Examples: len(items), CrossValidation: &cv, Options: &opts}
	return m, rep, nil
}

// assignFolds puts each labelled event in a fold, all those of a source thread in
// the same one, deterministically.
func assignFolds(items []Labelled, k int) []int {
	out := make([]int, len(items))
	for i, it := range items {
		h := fnv.New32a()
		_, _ = h.Write([]byte(cmp.Or(it.Source, fmt.Sprint(i))))
		out[i] = int(h.Sum32() % uint32(k)) //nolint:gosec // k is small and positive
	}
	return out
}

// fitted is a model fitted on some examples, with its features as columns.
type fitted struct {
	buckets uint32
	cols    map[uint32]int // bucket -> column
	nc      int
	w       []float64 // per column: nc class weights and a retry weight; then the biases
}

func (f *fitted) logits(feats []uint32) []float64 {
	width := f.nc + 1
	z := slices.Clone(f.w[len(f.cols)*width:])
	for _, b := range uniqueBuckets(feats, f.buckets) {
		if c, ok := f.cols[b]; ok {
			for j := range width {
				z[j] += f.w[c*width+j]
			}
		}
	}
	return z
}

// uniqueBuckets maps features to their buckets, each once.
func uniqueBuckets(feats []uint32, buckets uint32) []uint32 {
	out := make([]uint32, len(feats))
	for i, h := range feats {
		out[i] = h & (buckets - 1)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (f *fitted) model(classes []failure.Category, opts TrainOptions) *Model {
	width := f.nc + 1
	m := &Model{classes: classes, buckets: f.buckets, rowOf: make([]int32, f.buckets),
		weights: make([]float32, len(f.cols)*width), bias: slices.Clone(f.w[len(f.cols)*width:]),
		minConfidence: opts.MinConfidence, ruleFeatures: opts.RuleFeatures}
	for i := range m.rowOf {
		m.rowOf[i] = -1
	}
	for b, c := range f.cols {
		m.rowOf[b] = int32(c) //nolint:gosec // columns number at most the buckets
		for j := range width {
			m.weights[c*width+j] = float32(f.w[c*width+j])
		}
	}
	return m
}

// fit trains the weights on the examples idx by L-BFGS: the mean cross-entropy of
// the categories plus that of the retry decisions, each example counted by its weight,
// plus an L2 penalty on the weights.
func fit(exs []example, idx []int, nc int, opts TrainOptions) (*fitted, error) {
	df := map[uint32]int{}
	docs := make([][]uint32, len(idx))
	for k, i := range idx {
		docs[k] = uniqueBuckets(exs[i].feats, opts.Buckets)
		for _, b := range docs[k] {
			df[b]++
		}
	}
	f := &fitted{buckets: opts.Buckets, cols: map[uint32]int{}, nc: nc}
	var kept []uint32
	for b, n := range df {
		if n >= opts.MinDocFreq {
			kept = append(kept, b)
		}
	}
	slices.Sort(kept) // deterministic columns
	for c, b := range kept {
		f.cols[b] = c
	}
	rows := make([][]int, len(idx)) // example -> columns
	for k, doc := range docs {
		for _, b := range doc {
			if c, ok := f.cols[b]; ok {
				rows[k] = append(rows[k], c)
			}
		}
	}
	width := nc + 1
	nw := len(kept) * width
	var n float64 // the examples' total weight
	for _, i := range idx {
		n += exs[i].weight
	}
	// Category weights, scaled to average 1 over the examples' weights. A category's
	// rarity is counted in examples, not in their weights, so that class balance does
	// not give back to a category of disagreed lines what AmbiguousWeight took.
	counts := make([]float64, nc)  // examples
	weighed := make([]float64, nc) // their weights
	for _, i := range idx {
		counts[exs[i].class]++
		weighed[exs[i].class] += exs[i].weight
	}
	present := 0
	for _, c := range counts {
		if c > 0 {
			present++
		}
	}
	weight := make([]float64, nc)
	var total float64
	examples := float64(len(idx))
	for c, k := range counts {
		if k > 0 {
			weight[c] = math.Pow(examples/(float64(present)*k), opts.ClassBalance)
			total += weight[c] * weighed[c]
		}
	}
	for c := range weight {
		weight[c] *= n / total
	}
	z := make([]float64, width)
	p := make([]float64, nc)
	var lastX []float64
	var lastF float64
	var lastG []float64
	eval := func(x []float64) (float64, []float64) {
		if lastX != nil && slices.Equal(x, lastX) {
			return lastF, lastG
		}
		g := make([]float64, len(x))
		var loss float64
		for k, i := range idx {
			copy(z, x[nw:])
			for _, c := range rows[k] {
				for j := range width {
					z[j] += x[c*width+j]
				}
			}
			softmax(z[:nc], 1, p)
			y := exs[i].class
			we := exs[i].weight
			wy := weight[y] * we
			loss -= wy * math.Log(max(p[y], 1e-300))
			// d/dz of the class loss is p - onehot(y); of the retry loss, sigma - r.
			dz := make([]float64, width)
			for j := range nc {
				dz[j] = wy * p[j]
			}
			dz[y] -= wy
			s := sigmoid(z[nc])
			r := 0.0
			if exs[i].retry {
				r = 1
			}
			loss -= we * (r*math.Log(max(s, 1e-300)) + (1-r)*math.Log(max(1-s, 1e-300)))
			dz[nc] = we * (s - r)
			for _, c := range rows[k] {
				for j := range width {
					g[c*width+j] += dz[j]
				}
			}
			for j := range width {
				g[nw+j] += dz[j]
			}
		}
		loss /= n
		for j := range g {
			g[j] /= n
		}
		for j := range nw {
			loss += opts.L2 / 2 * x[j] * x[j]
			g[j] += opts.L2 * x[j]
		}
		lastX, lastF, lastG = slices.Clone(x), loss, g
		return loss, g
	}
	prob := optimize.Problem{
		Func: func(x []float64) float64 { l, _ := eval(x); return l },
		Grad: func(grad, x []float64) { _, g := eval(x); copy(grad, g) },
	}
	res, err := optimize.Minimize(prob, make([]float64, nw+width),
		&optimize.Settings{MajorIterations: opts.MaxIterations, GradientThreshold: 1e-6}, &optimize.LBFGS{})
	if err != nil && res == nil {
		return nil, err
	}
	// An iteration limit or a line search that stalls near the optimum still leaves
	// usable weights; anything not finite does not.
	for _, v := range res.X {
		if !finite(v) {
			if err == nil {
				err = errors.New("weights not finite")
			}
			return nil, fmt.Errorf("fit: %w", err)
		}
	}
	f.w = res.X
	return f, nil
}

// fitTemperature chooses the temperature that maximises the held-out likelihood of
// the true categories (golden-section search on its logarithm).
func fitTemperature(oof [][]float64, exs []example, nc int) float64 {
	p := make([]float64, nc)
	nll := func(logT float64) float64 {
		t := math.Exp(logT)
		var s float64
		for i, z := range oof {
			softmax(z[:nc], t, p)
			s -= math.Log(max(p[exs[i].class], 1e-300))
		}
		return s
	}
	return math.Exp(goldenMin(nll, math.Log(0.05), math.Log(20)))
}

// fitPlatt fits P(retry) = sigmoid(a*z + b) to the held-out retry logits z by
// Newton's method on the log-likelihood.
func fitPlatt(oof [][]float64, exs []example, nc int) (a, b float64) {
	a = 1
	for range 50 {
		var ga, gb, haa, hab, hbb float64
		for i, z := range oof {
			x := z[nc]
			s := sigmoid(a*x + b)
			r := 0.0
			if exs[i].retry {
				r = 1
			}
			d := s - r
			w := max(s*(1-s), 1e-9)
			ga += d * x
			gb += d
			haa += w * x * x
			hab += w * x
			hbb += w
		}
		// A little ridge keeps the step finite when the classes separate.
		haa, hbb = haa+1e-6, hbb+1e-6
		det := haa*hbb - hab*hab
		if det <= 0 {
			break
		}
		da, db := (hbb*ga-hab*gb)/det, (haa*gb-hab*ga)/det
		a, b = a-da, b-db
		if math.Abs(da)+math.Abs(db) < 1e-9 {
			break
		}
	}
	if !finite(a) || !finite(b) {
		return 1, 0
	}
	return a, b
}

// goldenMin minimises a unimodal f on [lo, hi].
func goldenMin(f func(float64) float64, lo, hi float64) float64 {
	const r = 0.6180339887498949
	a, b := lo, hi
	c, d := b-r*(b-a), a+r*(b-a)
	fc, fd := f(c), f(d)
	for range 60 {
		if fc < fd {
			b, d, fd = d, c, fc
			c = b - r*(b-a)
			fc = f(c)
		} else {
			a, c, fc = c, d, fd
			d = a + r*(b-a)
			fd = f(d)
		}
	}
	return (a + b) / 2
}

// retryCurve is the false-retry and missed-retry rates at thresholds 0.05 to 0.95.
func retryCurve(probs [][]float64, p []float64, exs []example, classes []failure.Category, minConf float64) []CurvePoint {
	var pos, neg int
	for _, ex := range exs {
		if ex.retry {
			pos++
		} else {
			neg++
		}
	}
	var out []CurvePoint
	for t := 5; t <= 95; t += 5 {
		th := float64(t) / 100
		var fr, mr int
		for i, ex := range exs {
			retry := modelRetries(classes, probs[i], p[i], th, minConf)
			switch {
			case !ex.retry && retry:
				fr++
			case ex.retry && !retry:
				mr++
			}
		}
		out = append(out, CurvePoint{Threshold: th, FalseRetryRate: ratio(fr, neg), MissedRate: ratio(mr, pos)})
	}
	return out
}

// modelRetries is the retry decision of a model that gives the classes probs and a
// retry pRetry, as fromModel makes it: at or above the threshold, for a category it
// does not abstain on and that a retry can fix.
func modelRetries(classes []failure.Category, probs []float64, pRetry, threshold, minConf float64) bool {
	best := 0
	for c, v := range probs {
		if v > probs[best] {
			best = c
		}
	}
	return pRetry >= threshold && probs[best] >= minConf && classes[best].DefaultRetryable()
}

// chooseThreshold is the lowest threshold whose false-retry rate is at most target
// (the highest of the curve when none is).
func chooseThreshold(curve []CurvePoint, target float64) float64 {
	for _, pt := range curve {
		if pt.FalseRetryRate <= target {
			return pt.Threshold
		}
	}
	return curve[len(curve)-1].Threshold
}

// reliability bins the held-out confidences in tenths.
func reliability(probs [][]float64, pRetry []float64, exs []example) (cat, retry []ReliabilityBin) {
	cat, retry = make([]ReliabilityBin, 10), make([]ReliabilityBin, 10)
	for i := range cat {
		cat[i] = ReliabilityBin{Low: float64(i) / 10, High: float64(i+1) / 10}
		retry[i] = cat[i]
	}
	bin := func(p float64) int { return min(int(p*10), 9) }
	for i, ex := range exs {
		best := 0
		for c, v := range probs[i] {
			if v > probs[i][best] {
				best = c
			}
		}
		b := &cat[bin(probs[i][best])]
		b.Count++
		b.MeanPredict += probs[i][best]
		if best == ex.class {
			b.Observed++
		}
		r := &retry[bin(pRetry[i])]
		r.Count++
		r.MeanPredict += pRetry[i]
		if ex.retry {
			r.Observed++
		}
	}
	for _, bins := range [][]ReliabilityBin{cat, retry} {
		for i := range bins {
			if n := float64(bins[i].Count); n > 0 {
				bins[i].MeanPredict /= n
				bins[i].Observed /= n
			}
		}
	}
	return cat, retry
}

// cvFigures scores the held-out predictions as the model alone would decide.
func cvFigures(probs [][]float64, pRetry []float64, exs []example, classes []failure.Category, threshold, minConf float64, folds int) CVFigures {
	out := CVFigures{Folds: folds}
	var catOK, retryOK, fr, mr, pos, neg int
	for i, ex := range exs {
		p, pr := probs[i], pRetry[i] //nolint:gosec // one entry per example
		best := 0
		for c, v := range p {
			if v > p[best] {
				best = c
			}
		}
		cat := classes[best] //nolint:gosec // best indexes p, one probability per class
		if p[best] < minConf {
			cat = failure.Unknown
		}
		retry := modelRetries(classes, p, pr, threshold, minConf)
		if cat == classes[ex.class] {
			catOK++
		}
		if ex.retry {
			pos++
		} else {
			neg++
		}
		switch {
		case retry == ex.retry:
			retryOK++
		case retry:
			fr++
		default:
			mr++
		}
		out.LogLoss -= math.Log(max(p[ex.class], 1e-300))
		for c, v := range p {
			d := v
			if c == ex.class {
				d--
			}
			out.Brier += d * d
		}
	}
	n := len(exs)
	out.CategoryAccuracy, out.RetryAccuracy = ratio(catOK, n), ratio(retryOK, n)
	out.FalseRetryRate, out.MissedRetryRate = ratio(fr, neg), ratio(mr, pos)
	out.LogLoss /= float64(n)
	out.Brier /= float64(n)
	return out
}

// String summarises the report in one line.
func (r *TrainReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cross-validated (%d folds): category %.3f, retry %.3f, false retries %.1f%%, missed retries %.1f%%, log-loss %.3f, Brier %.3f; temperature %.2f, retry threshold %.2f, %d features",
		r.CV.Folds, r.CV.CategoryAccuracy, r.CV.RetryAccuracy, 100*r.CV.FalseRetryRate, 100*r.CV.MissedRetryRate,
		r.CV.LogLoss, r.CV.Brier, r.Temperature, r.RetryThreshold, r.Features)
	return b.String()
}

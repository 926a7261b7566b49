package classifier

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/autofix/autofix/failure"
)

// Model is the learned classifier: a multinomial logistic regression from a
// failure's hashed features to its category, and a logistic regression to the
// probability that a retry can fix it. Both are calibrated on held-out folds (a
// temperature for the categories, Platt scaling for retries). A Model is immutable
// and safe for concurrent use.
type Model struct {
	classes []failure.Category
	buckets uint32
	// rowOf maps a feature's bucket to its row of weights, -1 for buckets no
	// training text had often enough (their weight is zero).
	rowOf []int32
	// weights holds, for each row, one weight per class and then the retry weight.
	weights []float32
	bias    []float64 // per class, then retry

	temperature    float64
	retryA, retryB float64
	// RetryThreshold is the calibrated P(a retry can fix it) at or above which the
	// model calls a failure retryable; MinConfidence the calibrated probability of its
	// category below which it abstains (unknown).
	retryThreshold float64
	minConfidence  float64
	ruleFeatures   bool
	// rulesDigest is the digest of the rules whose matches are features (with
	// ruleFeatures).
	rulesDigest string

	info ModelInfo
}

// ModelInfo describes how a model was trained.
type ModelInfo struct {
	// Examples is how many labelled failures it was trained on; Sources the files
	// (as given to train-classifier) and Options the options.
	Examples int           `json:"examples"`
	Sources  []string      `json:"sources,omitempty"`
	Options  *TrainOptions `json:"options,omitempty"`
	// RulesDir and KnowledgeDir are the rules and knowledge tables it was trained
	// with when not the embedded ones.
	RulesDir     string `json:"rulesDir,omitempty"`
	KnowledgeDir string `json:"knowledgeDir,omitempty"`
	// Trained is when, RFC 3339.
	Trained string `json:"trained,omitempty"`
	// CrossValidation are the figures of the held-out folds that calibrated it.
	CrossValidation *CVFigures `json:"crossValidation,omitempty"`
}

// CVFigures are a model's figures on held-out folds.
type CVFigures struct {
	Folds            int     `json:"folds"`
	CategoryAccuracy float64 `json:"categoryAccuracy"`
	RetryAccuracy    float64 `json:"retryAccuracy"`
	FalseRetryRate   float64 `json:"falseRetryRate"`
	MissedRetryRate  float64 `json:"missedRetryRate"`
	LogLoss          float64 `json:"logLoss"`
	Brier            float64 `json:"brier"`
}

// Prediction is what the model makes of one failure.
type Prediction struct {
	// Category is the most probable category and Confidence its calibrated
	// probability.
	Category   failure.Category
	Confidence float64
	// PRetry is the calibrated probability that a retry can fix the failure.
	PRetry float64
}

// Classes returns the categories the model tells apart.
func (m *Model) Classes() []failure.Category { return m.classes }

// Fits reports whether the model can be used with rs: a model that reads the rules'
// matches only with the rules it was trained with.
func (m *Model) Fits(rs *RuleSet) bool { return !m.ruleFeatures || m.rulesDigest == rs.Digest() }

// AddSource records a file the model was trained on (by name, for the record).
func (m *Model) AddSource(name string) { m.info.Sources = append(m.info.Sources, name) }

// SetTrainedWith records the rules and knowledge directories the model was trained
// with ("" for the embedded ones).
func (m *Model) SetTrainedWith(rulesDir, knowledgeDir string) {
	m.info.RulesDir, m.info.KnowledgeDir = rulesDir, knowledgeDir
}

// Info returns how the model was trained.
func (m *Model) Info() ModelInfo { return m.info }

// RetryThreshold is the calibrated P(retry helps) at or above which the model calls
// a failure retryable.
func (m *Model) RetryThreshold() float64 { return m.retryThreshold }

// predict scores a failure's features, counting each row of weights once (st marks
// them).
func (m *Model) predict(st *featureScratch, feats []uint32) Prediction {
	if len(st.rowSeen) < len(m.weights)/(len(m.classes)+1) {
		st.rowSeen, st.rowGen = make([]uint32, len(m.weights)/(len(m.classes)+1)), 0
	}
	st.rowGen++
	if st.rowGen == 0 {
		clear(st.rowSeen)
		st.rowGen = 1
	}
	nc := len(m.classes)
	var buf [32]float64
	z := buf[:nc+1]
	copy(z, m.bias)
	width := nc + 1
	mask := m.buckets - 1
	for _, f := range feats {
		r := m.rowOf[f&mask]
		if r < 0 || st.rowSeen[r] == st.rowGen {
			continue
		}
		st.rowSeen[r] = st.rowGen
		w := m.weights[int(r)*width : int(r+1)*width]
		for c := range z {
			z[c] += float64(w[c])
		}
	}
	p := buf[nc+1 : 2*nc+1]
	softmax(z[:nc], m.temperature, p)
	best := 0
	for c := 1; c < nc; c++ {
		if p[c] > p[best] {
			best = c
		}
	}
	out := Prediction{Category: m.classes[best], Confidence: p[best],
		PRetry: pRetry(m.classes, p, sigmoid(m.retryA*z[nc]+m.retryB))}
	return out
}

// pRetry is the probability that a retry can fix a failure whose categories have
// probabilities p: the probability of the categories a retry can fix, where for an
// image that could not be pulled (a registry that failed, or an image that does not
// exist) the retry head's own probability, head, decides.
func pRetry(classes []failure.Category, p []float64, head float64) float64 {
	var out float64
	for c, cat := range classes {
		switch {
		case cat == failure.ImagePull:
			out += p[c] * head
		case cat.DefaultRetryable():
			out += p[c]
		}
	}
	return min(out, 1)
}

// softmax writes to p the softmax of z / t.
func softmax(z []float64, t float64, p []float64) {
	top := slices.Max(z)
	var sum float64
	for c, v := range z {
		p[c] = math.Exp((v - top) / t)
		sum += p[c]
	}
	for c := range p {
		p[c] /= sum
	}
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// The artifact's kind and version.
const (
	modelKind    = "autofix-failure-classifier"
	modelVersion = 1
	// maxModelBuckets bounds an artifact's hash space (untrusted input).
	maxModelBuckets = 1 << 22
)

type modelJSON struct {
	Kind           string    `json:"kind"`
	Version        int       `json:"version"`
	Classes        []string  `json:"classes"`
	Buckets        uint32    `json:"buckets"`
	RuleFeatures   bool      `json:"ruleFeatures"`
	RulesDigest    string    `json:"rulesDigest,omitempty"`
	Temperature    float64   `json:"temperature"`
	RetryA         float64   `json:"retryA"`
	RetryB         float64   `json:"retryB"`
	RetryThreshold float64   `json:"retryThreshold"`
	MinConfidence  float64   `json:"minConfidence"`
	Bias           []float64 `json:"bias"`
	// Rows are the buckets that have weights (little-endian uint32, base64) and
	// Weights theirs, row by row (little-endian float32, base64).
	Rows    string    `json:"rows"`
	Weights string    `json:"weights"`
	Info    ModelInfo `json:"info"`
}

// MarshalJSON writes the model's versioned artifact.
func (m *Model) MarshalJSON() ([]byte, error) {
	rows := make([]uint32, 0)
	for b, r := range m.rowOf {
		if r >= 0 {
			rows = append(rows, uint32(b)) //nolint:gosec // b < buckets <= maxModelBuckets
		}
	}
	width := len(m.classes) + 1
	rowBytes := make([]byte, 4*len(rows))
	wBytes := make([]byte, 4*len(rows)*width)
	for i, b := range rows {
		binary.LittleEndian.PutUint32(rowBytes[4*i:], b)
		r := int(m.rowOf[b])
		for c := range width {
			binary.LittleEndian.PutUint32(wBytes[4*(i*width+c):], math.Float32bits(m.weights[r*width+c]))
		}
	}
	return json.Marshal(modelJSON{
		Kind: modelKind, Version: modelVersion, Classes: classNames(m.classes), Buckets: m.buckets,
		RuleFeatures: m.ruleFeatures, RulesDigest: m.rulesDigest, Temperature: m.temperature, RetryA: m.retryA, RetryB: m.retryB,
		RetryThreshold: m.retryThreshold, MinConfidence: m.minConfidence, Bias: m.bias,
		Rows: base64.StdEncoding.EncodeToString(rowBytes), Weights: base64.StdEncoding.EncodeToString(wBytes),
		Info: m.info,
	})
}

// UnmarshalJSON reads an artifact MarshalJSON wrote, checking every field.
func (m *Model) UnmarshalJSON(data []byte) error {
	var j modelJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	switch {
	case j.Kind != modelKind:
		return fmt.Errorf("kind: %q: want %q", j.Kind, modelKind)
	case j.Version != modelVersion:
		return fmt.Errorf("version: %d: want %d", j.Version, modelVersion)
	case len(j.Classes) < 2 || len(j.Classes) > len(failure.Categories()):
		return fmt.Errorf("classes: %d: want 2 to %d", len(j.Classes), len(failure.Categories()))
	case j.Buckets < 2 || j.Buckets > maxModelBuckets || j.Buckets&(j.Buckets-1) != 0:
		return fmt.Errorf("buckets: %d: want a power of two up to %d", j.Buckets, maxModelBuckets)
	case !(j.Temperature > 0 && j.Temperature <= 1000):
		return fmt.Errorf("temperature: %v: want (0, 1000]", j.Temperature)
	case !finite(j.RetryA) || !finite(j.RetryB):
		return errors.New("retryA, retryB: want finite numbers")
	case !(j.RetryThreshold > 0 && j.RetryThreshold < 1):
		return fmt.Errorf("retryThreshold: %v: want (0, 1)", j.RetryThreshold)
	case !(j.MinConfidence >= 0 && j.MinConfidence < 1):
		return fmt.Errorf("minConfidence: %v: want [0, 1)", j.MinConfidence)
	}
	classes := make([]failure.Category, len(j.Classes))
	for i, name := range j.Classes {
		c := failure.Category(name)
		if !c.Valid() || slices.Contains(classes[:i], c) {
			return fmt.Errorf("classes[%d]: %q: unknown or repeated", i, name)
		}
		classes[i] = c
	}
	if len(j.Bias) != len(j.Classes)+1 {
		return fmt.Errorf("bias: %d values: want %d", len(j.Bias), len(j.Classes)+1)
	}
	for i, b := range j.Bias {
		if !finite(b) {
			return fmt.Errorf("bias[%d]: not a finite number", i)
		}
	}
	rowBytes, err := base64.StdEncoding.DecodeString(j.Rows)
	if err != nil {
		return fmt.Errorf("rows: %w", err)
	}
	wBytes, err := base64.StdEncoding.DecodeString(j.Weights)
	if err != nil {
		return fmt.Errorf("weights: %w", err)
	}
	width := len(j.Classes) + 1
	n := len(rowBytes) / 4
	switch {
	case len(rowBytes)%4 != 0 || n > int(j.Buckets):
		return fmt.Errorf("rows: %d bytes: want 4 per row, at most one row per bucket", len(rowBytes))
	case len(wBytes) != 4*n*width:
		return fmt.Errorf("weights: %d bytes: want %d (%d rows of %d)", len(wBytes), 4*n*width, n, width)
	}
	*m = Model{
		classes: classes, buckets: j.Buckets, bias: j.Bias, temperature: j.Temperature,
		retryA: j.RetryA, retryB: j.RetryB, retryThreshold: j.RetryThreshold,
		minConfidence: j.MinConfidence, ruleFeatures: j.RuleFeatures, rulesDigest: j.RulesDigest, info: j.Info,
		rowOf: make([]int32, j.Buckets), weights: make([]float32, n*width),
	}
	for i := range m.rowOf {
		m.rowOf[i] = -1
	}
	for i := range n {
		b := binary.LittleEndian.Uint32(rowBytes[4*i:])
		if b >= j.Buckets || m.rowOf[b] >= 0 {
			return fmt.Errorf("rows[%d]: bucket %d out of range or repeated", i, b)
		}
		m.rowOf[b] = int32(i) //nolint:gosec // i < n <= buckets
		for c := range width {
			w := math.Float32frombits(binary.LittleEndian.Uint32(wBytes[4*(i*width+c):]))
			if !finite(float64(w)) {
				return fmt.Errorf("weights: row %d: not a finite number", i)
			}
			m.weights[i*width+c] = w
		}
	}
	return nil
}

func classNames(cs []failure.Category) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

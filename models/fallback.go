package models

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/sjwhitworth/golearn/base"
	"github.com/sjwhitworth/golearn/naive"

	"github.com/autofix/autofix/failure"
)

const (
	// The defaults of FallbackOptions. 500 features did best (400-600 were level,
	// 1000 and more clearly worse) when each of the four older labelled sets was
	// held out in turn.
	fallbackMinDocFreq = 2
	fallbackMaxVocab   = 500

	// The cross-validation that fits the temperature of the probabilities: how
	// many folds, and the largest temperature it may choose.
	calibrationFolds = 5
	maxTemperature   = 1000

	// The kind and version of the artifact MarshalJSON writes.
	fallbackKind    = "fallback-bernoulli-nb"
	fallbackVersion = 1

	// biasFeature is set in every training text. golearn's Fit panics on a class
	// none of whose texts has a feature; this one cannot be a token ('_' separates
	// tokens) and adds log(1) = 0 to every class, so it changes no score and is not
	// kept.
	biasFeature = "_bias"
)

// FallbackExample is a failure's text and its category.
type FallbackExample struct {
	Text     string
	Category failure.Category
}

// FallbackOptions configure TrainFallback; zero values mean the defaults.
type FallbackOptions struct {
	// MinDocFreq is how many training texts must contain a token for it to be a
	// feature (default 2).
	MinDocFreq int
	// MaxVocab caps the number of features, keeping the tokens found in the most
	// texts (default 500).
	MaxVocab int
}

// Fallback is a Bernoulli naive Bayes classifier of failure texts: the learned
// fallback for failures no rule explains with confidence. Its features are the
// presence of vocabulary tokens in FallbackText. It is trained with golearn's
// BernoulliNB; Predict scores with the trained parameters itself, without golearn,
// and tempers the probabilities with a temperature fitted by cross-validation.
// A Fallback is immutable and safe for concurrent use.
type Fallback struct {
	vocab   []string // feature tokens, sorted
	classes []failure.Category
	// counts is the number of training texts of each class.
	counts []int
	// condProb[c][f] is p(token f present | class c) as golearn estimated it:
	// (texts of c with f + 1) / (texts of c + 1).
	condProb [][]float64
	// temperature divides the log-probabilities of the classes before they are
	// normalised (1 = naive Bayes as is; more = less confident).
	temperature float64

	// Derived from the above by derive.
	index map[string]int32 // token -> feature
	// logBase[c] is log p(c) + the sum over all features of log p(absent | c).
	logBase []float64
	// delta[f*len(classes)+c] is log p(present | c) - log p(absent | c).
	delta []float64
}

// FallbackText returns the text the fallback reads from an event (reason, message,
// log tail).
func FallbackText(ev *failure.Event) string {
	s := &ev.Failure
	return s.Reason + "\n" + s.Message + "\n" + s.LogTail
}

// TrainFallback trains a fallback on examples, which must carry categories of the
// taxonomy (unknown included: the fallback may predict it).
func TrainFallback(examples []FallbackExample, opts FallbackOptions) (*Fallback, error) {
	opts.MinDocFreq = cmp.Or(opts.MinDocFreq, fallbackMinDocFreq)
	opts.MaxVocab = cmp.Or(opts.MaxVocab, fallbackMaxVocab)
	switch {
	case len(examples) == 0:
		return nil, errors.New("train fallback: no examples")
	case opts.MinDocFreq < 1 || opts.MaxVocab < 1:
		return nil, fmt.Errorf("train fallback: options %+v: must be positive", opts)
	}
	docs := make([][]string, len(examples))
	for i, ex := range examples {
		if !ex.Category.Valid() {
			return nil, fmt.Errorf("train fallback: example %d: unknown category %q", i, ex.Category)
		}
		docs[i] = fallbackTokens(ex.Text)
	}
	f, err := fitFallback(examples, docs, opts)
	if err != nil {
		return nil, fmt.Errorf("train fallback: %w", err)
	}
	if f.temperature, err = fitTemperature(examples, docs, opts); err != nil {
		return nil, fmt.Errorf("train fallback: calibrate: %w", err)
	}
	return f, nil
}

// fitFallback chooses the vocabulary, trains golearn's BernoulliNB on docs, the token
// sets of examples, and returns a Fallback with its parameters and a temperature of 1.
func fitFallback(examples []FallbackExample, docs [][]string, opts FallbackOptions) (*Fallback, error) {
	df := map[string]int{}
	seen := map[failure.Category]bool{}
	for i, doc := range docs {
		seen[examples[i].Category] = true
		for _, t := range doc {
			df[t]++
		}
	}
	f := &Fallback{temperature: 1}
	for t, n := range df {
		if n >= opts.MinDocFreq {
			f.vocab = append(f.vocab, t)
		}
	}
	// The most frequent first, ties by token, so that the cap is deterministic.
	slices.SortFunc(f.vocab, func(a, b string) int { return cmp.Or(df[b]-df[a], cmp.Compare(a, b)) })
	f.vocab = slices.Clip(f.vocab[:min(len(f.vocab), opts.MaxVocab)])
	slices.Sort(f.vocab)
	for _, c := range failure.Categories() {
		if seen[c] {
			f.classes = append(f.classes, c)
		}
	}

	inst := base.NewDenseInstances()
	specs := make(map[string]base.AttributeSpec, len(f.vocab)+1)
	for _, t := range append(f.vocab, biasFeature) {
		specs[t] = inst.AddAttribute(base.NewBinaryAttribute(t))
	}
	class := base.NewCategoricalAttribute()
	class.SetName("category")
	for _, c := range f.classes {
		class.GetSysValFromString(string(c))
	}
	classSpec := inst.AddAttribute(class)
	if err := inst.AddClassAttribute(class); err != nil {
		return nil, err
	}
	if err := inst.Extend(len(docs)); err != nil {
		return nil, err
	}
	for r, doc := range docs {
		for _, t := range doc {
			if s, ok := specs[t]; ok {
				inst.Set(s, r, []byte{1})
			}
		}
		inst.Set(specs[biasFeature], r, []byte{1})
		inst.Set(classSpec, r, class.GetSysVal(string(examples[r].Category)))
	}
	nb := naive.NewBernoulliNBClassifier()
	if err := nb.Fit(inst); err != nil {
		return nil, fmt.Errorf("golearn: %w", err)
	}
	if err := f.readParams(nb); err != nil {
		return nil, err
	}
	f.derive()
	return f, nil
}

// readParams copies the class counts and conditional probabilities out of a fitted
// BernoulliNB. golearn keeps them unexported and predicts no probabilities, so they
// are read through reflection and checked against the layout of the pinned version:
// features in the order of their attributes, the bias feature last.
func (f *Fallback) readParams(nb *naive.BernoulliNBClassifier) error {
	v := reflect.ValueOf(nb).Elem()
	cond, counts := v.FieldByName("condProb"), v.FieldByName("classInstances")
	if !cond.IsValid() || !counts.IsValid() ||
		cond.Type() != reflect.TypeFor[map[string][]float64]() || counts.Type() != reflect.TypeFor[map[string]int]() {
		return errors.New("golearn: unexpected layout of BernoulliNBClassifier")
	}
	nf := len(f.vocab) + 1
	f.counts = make([]int, len(f.classes))
	f.condProb = make([][]float64, len(f.classes))
	for c, name := range f.classes {
		n, p := counts.MapIndex(reflect.ValueOf(string(name))), cond.MapIndex(reflect.ValueOf(string(name)))
		if !n.IsValid() || !p.IsValid() || p.Len() != nf || p.Index(nf-1).Float() != 1 {
			return fmt.Errorf("golearn: unexpected parameters for class %s", name)
		}
		f.counts[c] = int(n.Int())
		f.condProb[c] = make([]float64, nf-1)
		for i := range f.condProb[c] {
			f.condProb[c][i] = p.Index(i).Float()
		}
	}
	return nil
}

// derive computes the index and the scoring tables from vocab, classes, counts and
// condProb with golearn's formula: log p(c) + the sum over features of log p(f|c)
// when present and log(1-p(f|c)) when absent, where p(f|c) = 1 counts 1/(n_c+1)
// absent.
func (f *Fallback) derive() {
	nc, total := len(f.classes), 0
	for _, n := range f.counts {
		total += n
	}
	f.index = make(map[string]int32, len(f.vocab))
	for i, t := range f.vocab {
		f.index[t] = int32(i)
	}
	f.logBase = make([]float64, nc)
	f.delta = make([]float64, len(f.vocab)*nc)
	for c, probs := range f.condProb {
		f.logBase[c] = math.Log(float64(f.counts[c]) / float64(total))
		for i, p := range probs {
			absent := -math.Log(float64(f.counts[c] + 1))
			if p != 1 {
				absent = math.Log(1 - p)
			}
			f.logBase[c] += absent
			f.delta[i*nc+c] = math.Log(p) - absent
		}
	}
}

// Predict returns the most likely category and its probability: the posterior over
// the categories seen in training, tempered. A zero Fallback predicts unknown with
// probability 0.
func (f *Fallback) Predict(text string) (failure.Category, float64) {
	var buf [16]float64
	scores := f.scores(text, buf[:0])
	if len(scores) == 0 {
		return failure.Unknown, 0
	}
	best := 0
	for c, s := range scores {
		if s > scores[best] {
			best = c
		}
	}
	return f.classes[best], math.Exp(logPosterior(scores, best, f.temperature))
}

// scores appends to dst the log joint probability of text and each class.
func (f *Fallback) scores(text string, dst []float64) []float64 {
	nc := len(f.classes)
	dst = append(dst, f.logBase...)
	var seenBuf [32]uint64
	seen := seenBuf[:]
	if n := (len(f.vocab) + 63) / 64; n > len(seenBuf) {
		seen = make([]uint64, n)
	}
	sc := tokenScanner{text: text, buf: make([]byte, 0, 64)}
	for tok, ok := sc.next(); ok; tok, ok = sc.next() {
		i, ok := f.index[string(tok)]
		if !ok || seen[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		seen[i/64] |= 1 << (i % 64)
		for c, d := range f.delta[int(i)*nc : int(i+1)*nc] {
			dst[len(dst)-nc+c] += d
		}
	}
	return dst
}

// logPosterior is log p(class k | text) from the log joint probabilities of text and
// the classes at temperature t: s_k/t - logsumexp(s/t), with the largest score
// factored out.
func logPosterior(scores []float64, k int, t float64) float64 {
	top := slices.Max(scores)
	var sum float64
	for _, s := range scores {
		sum += math.Exp((s - top) / t)
	}
	return (scores[k]-top)/t - math.Log(sum)
}

// fitTemperature returns the temperature that maximises the likelihood of the true
// categories when each of calibrationFolds folds of the examples is predicted by a
// fallback trained on the others. Naive Bayes takes correlated tokens for independent
// evidence, so its probabilities are far too confident; tempered, a threshold on them
// means about what it says.
func fitTemperature(examples []FallbackExample, docs [][]string, opts FallbackOptions) (float64, error) {
	type heldOut struct {
		scores []float64
		truth  int
	}
	var held []heldOut
	for k := range calibrationFolds {
		var trainEx []FallbackExample
		var trainDocs [][]string
		for i := range examples {
			if i%calibrationFolds != k {
				trainEx, trainDocs = append(trainEx, examples[i]), append(trainDocs, docs[i])
			}
		}
		if len(trainEx) == 0 {
			continue
		}
		f, err := fitFallback(trainEx, trainDocs, opts)
		if err != nil {
			return 0, fmt.Errorf("fold %d: %w", k, err)
		}
		for i := k; i < len(examples); i += calibrationFolds {
			if truth := slices.Index(f.classes, examples[i].Category); truth >= 0 {
				held = append(held, heldOut{f.scores(examples[i].Text, nil), truth})
			}
		}
	}
	if len(held) == 0 {
		return 1, nil
	}
	// The negative log-likelihood is convex in 1/t: ternary search on 1/t.
	nll := func(inv float64) (sum float64) {
		for _, h := range held {
			sum -= logPosterior(h.scores, h.truth, 1/inv)
		}
		return sum
	}
	lo, hi := 1.0/maxTemperature, 1.0
	for range 100 {
		if a, b := lo+(hi-lo)/3, hi-(hi-lo)/3; nll(a) < nll(b) {
			hi = b
		} else {
			lo = a
		}
	}
	return min(max(2/(lo+hi), 1), maxTemperature), nil
}

// fallbackArtifact is the JSON form of a Fallback.
type fallbackArtifact struct {
	Kind        string          `json:"kind"`
	Version     int             `json:"version"`
	Temperature float64         `json:"temperature"`
	Vocab       []string        `json:"vocab"`
	Classes     []fallbackClass `json:"classes"`
}

type fallbackClass struct {
	Category failure.Category `json:"category"`
	// Count is the number of training texts of the category; CondProb[f] is
	// p(Vocab[f] present | Category).
	Count    int       `json:"count"`
	CondProb []float64 `json:"condProb"`
}

// MarshalJSON writes the fallback as a versioned artifact,
// {"kind":"fallback-bernoulli-nb","version":1,...}, holding all Predict needs.
func (f *Fallback) MarshalJSON() ([]byte, error) {
	a := fallbackArtifact{Kind: fallbackKind, Version: fallbackVersion, Temperature: f.temperature, Vocab: f.vocab}
	for c, cat := range f.classes {
		a.Classes = append(a.Classes, fallbackClass{cat, f.counts[c], f.condProb[c]})
	}
	return json.Marshal(a)
}

// UnmarshalJSON loads an artifact written by MarshalJSON; the loaded fallback
// predicts exactly as the saved one. Other kinds and versions are rejected.
func (f *Fallback) UnmarshalJSON(data []byte) error {
	var head struct {
		Kind    string `json:"kind"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("fallback artifact: %w", err)
	}
	if head.Kind != fallbackKind {
		return fmt.Errorf("fallback artifact: kind %q, want %q", head.Kind, fallbackKind)
	}
	if head.Version != fallbackVersion {
		return fmt.Errorf("fallback artifact: version %d not supported (want %d)", head.Version, fallbackVersion)
	}
	var a fallbackArtifact
	if err := json.Unmarshal(data, &a); err != nil {
		return fmt.Errorf("fallback artifact: %w", err)
	}
	if !(a.Temperature >= 1 && a.Temperature <= maxTemperature) {
		return fmt.Errorf("fallback artifact: temperature %v out of [1, %d]", a.Temperature, maxTemperature)
	}
	for i := 1; i < len(a.Vocab); i++ {
		if a.Vocab[i-1] >= a.Vocab[i] {
			return fmt.Errorf("fallback artifact: vocab not sorted and distinct at %q", a.Vocab[i])
		}
	}
	if len(a.Classes) == 0 {
		return errors.New("fallback artifact: classes: none")
	}
	g := Fallback{vocab: a.Vocab, temperature: a.Temperature}
	for _, c := range a.Classes {
		var bad string
		switch {
		case !c.Category.Valid(): // a class without one decodes to ""
			bad = "category missing or not in the taxonomy"
		case slices.Contains(g.classes, c.Category):
			bad = "duplicate"
		case c.Count < 1:
			bad = fmt.Sprintf("count %d, want 1 or more", c.Count)
		case len(c.CondProb) != len(a.Vocab):
			bad = fmt.Sprintf("%d condProb values for %d vocab tokens", len(c.CondProb), len(a.Vocab))
		case slices.ContainsFunc(c.CondProb, func(p float64) bool { return !(p > 0 && p <= 1) }):
			bad = "condProb value outside (0, 1]"
		}
		if bad != "" {
			return fmt.Errorf("fallback artifact: class %s: %s", c.Category, bad)
		}
		g.classes, g.counts, g.condProb = append(g.classes, c.Category), append(g.counts, c.Count), append(g.condProb, c.CondProb)
	}
	g.derive()
	*f = g
	return nil
}

// fallbackTokens returns the distinct tokens of text, sorted.
func fallbackTokens(text string) []string {
	var out []string
	sc := tokenScanner{text: text}
	for tok, ok := sc.next(); ok; tok, ok = sc.next() {
		out = append(out, string(tok))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// tokenScanner splits a text into lower-cased runs of letters and digits and skips
// those that are no use as features (see usefulToken).
type tokenScanner struct {
	text string
	pos  int
	buf  []byte
}

// next returns the next useful token, valid until the following call.
func (s *tokenScanner) next() ([]byte, bool) {
	for s.pos < len(s.text) {
		s.buf = s.buf[:0]
		for s.pos < len(s.text) {
			if c := s.text[s.pos]; c < utf8.RuneSelf {
				s.pos++
				if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
					s.buf = append(s.buf, c)
				} else if 'A' <= c && c <= 'Z' {
					s.buf = append(s.buf, c+'a'-'A')
				} else {
					break
				}
				continue
			}
			r, n := utf8.DecodeRuneInString(s.text[s.pos:])
			s.pos += n
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				break
			}
			s.buf = utf8.AppendRune(s.buf, unicode.ToLower(r))
		}
		if usefulToken(s.buf) {
			return s.buf, true
		}
	}
	return nil, false
}

// usefulToken reports whether a lower-cased token can be a feature: 3 characters or
// more, not a number, not a hex id (0x..., or 7 hex digits or more with a decimal
// digit among them: hashes, container and pod ids; "a100" and "bf16" stay).
func usefulToken(tok []byte) bool {
	if utf8.RuneCount(tok) < 3 {
		return false
	}
	digits, hex := 0, 0
	for _, c := range tok {
		switch {
		case '0' <= c && c <= '9':
			digits++
			hex++
		case 'a' <= c && c <= 'f':
			hex++
		}
	}
	switch {
	case digits == len(tok): // a number
		return false
	case tok[0] == '0' && tok[1] == 'x' && hex == len(tok)-1: // 0x...
		return false
	case hex == len(tok) && digits > 0 && len(tok) >= 7: // a hash or an id
		return false
	}
	return true
}

package classifier

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/autofix/autofix/failure"
)

// Options tune a Classifier.
type Options struct {
	// MinConfidence is the confidence below which a result is unknown. Default 0.5.
	MinConfidence float64
	// MaxEvidence bounds the evidence lines of a result. Default 8.
	MaxEvidence int
	// Knowledge are the knowledge tables whose hits are evidence and features of
	// the model; nil for none.
	Knowledge *Knowledge
	// Model is the learned classifier that decides the failures the rules are not
	// sure of; nil for rules alone.
	Model *Model
	// ModelMinConfidence is the calibrated probability below which the model
	// abstains; 0 means the model's own, chosen when it was trained.
	ModelMinConfidence float64
	// Authority is the confidence at or above which the rules decide alone, without
	// the model. Default 0.95.
	Authority float64
}

// Classifier classifies failure events with a rule set. It is safe for concurrent use.
type Classifier struct {
	rules *RuleSet
	opts  Options
	scan  *scanner
	pool  sync.Pool // *state
}

// New returns a classifier for rs.
func New(rs *RuleSet, opts Options) *Classifier {
	if opts.MinConfidence <= 0 {
		opts.MinConfidence = 0.5
	}
	if opts.MaxEvidence <= 0 {
		opts.MaxEvidence = 8
	}
	if opts.Authority <= 0 {
		opts.Authority = 0.95
	}
	k := opts.Knowledge
	if k == nil {
		k = emptyKnowledge
	}
	c := &Classifier{rules: rs, opts: opts, scan: newScanner(rs, k, 2*maxAutomatonCells)}
	c.pool.New = func() any { return new(state) }
	return c
}

// WithRules returns a classifier of rs with c's options: to try candidate rules
// exactly as c would apply them.
// A model trained with other rules' matches as features is left out: it would read
// matches it was not trained on.
func (c *Classifier) WithRules(rs *RuleSet) *Classifier {
	o := c.opts
	if o.Model != nil && !o.Model.Fits(rs) {
		o.Model = nil
	}
	return New(rs, o)
}

// WithModel returns a classifier with c's rules, knowledge and options and the model
// m (nil: rules and knowledge alone).
func (c *Classifier) WithModel(m *Model) *Classifier {
	o := c.opts
	o.Model = m
	return New(c.rules, o)
}

// Knowledge returns the classifier's knowledge tables, nil if it has none.
func (c *Classifier) Knowledge() *Knowledge { return c.opts.Knowledge }

// Model returns the classifier's learned model, nil if it has none.
func (c *Classifier) Model() *Model { return c.opts.Model }

// RuleSet returns the classifier's rules.
func (c *Classifier) RuleSet() *RuleSet { return c.rules }

// RuleError is a rule that failed while evaluating an event; it counts as not matched.
type RuleError struct {
	Rule string
	Err  error
}

func (e RuleError) Error() string { return fmt.Sprintf("rule %s: %v", e.Rule, e.Err) }

// Classify returns the category of ev with its confidence, the rules that support it
// and the evidence lines they matched. When no category reaches MinConfidence the
// result is unknown, not retryable, with action no_retry.
func (c *Classifier) Classify(ev *failure.Event) failure.Classification {
	cl, _ := c.ClassifyErrors(ev)
	return cl
}

// ClassifyErrors is Classify that also returns the rules that failed to evaluate.
func (c *Classifier) ClassifyErrors(ev *failure.Event) (failure.Classification, []RuleError) {
	cl, errs, _ := c.classify(ev, nil)
	return cl, errs
}

// ClassifyContext is ClassifyErrors for rule sets that may be expensive (an untrusted
// candidate): it returns ctx's error, and no classification, once ctx is done. It
// looks between rules; one rule's evaluation is bounded by the limits of the rule
// language, so it overruns the deadline by at most that.
func (c *Classifier) ClassifyContext(ctx context.Context, ev *failure.Event) (failure.Classification, []RuleError, error) {
	if err := ctx.Err(); err != nil {
		return failure.Classification{}, nil, err
	}
	cl, errs, stopped := c.classify(ev, ctx.Done())
	if stopped {
		return failure.Classification{}, nil, ctx.Err()
	}
	return cl, errs, nil
}

// classify evaluates every rule on ev; it stops, reporting stopped, when done is
// closed (a nil done never is).
func (c *Classifier) classify(ev *failure.Event, done <-chan struct{}) (_ failure.Classification, _ []RuleError, stopped bool) {
	st := c.pool.Get().(*state)
	defer c.pool.Put(st)
	st.prepare(ev, c.rules, c.scan)
	defer st.release()
	errs, stopped := c.match(st, done)
	if stopped {
		return failure.Classification{}, nil, true
	}
	return c.decide(st, ev), errs, false
}

// match evaluates the rules on the prepared state, collecting in st.matched those
// that match, until done is closed.
func (c *Classifier) match(st *state, done <-chan struct{}) (errs []RuleError, stopped bool) {
	st.matched = st.matched[:0]
	for i, r := range c.rules.rules {
		if done != nil {
			select {
			case <-done:
				return nil, true
			default:
			}
		}
		if r.trigger != nil && st.triggered[i] != st.gen {
			continue // none of the literals the rule needs occurs
		}
		st.built = 0
		out, err := st.vm.Run(r.program, st.vars)
		if err != nil {
			errs = append(errs, RuleError{Rule: r.ID, Err: err})
			continue
		}
		if out.(bool) {
			st.matched = append(st.matched, r)
		}
	}
	return errs, false
}

// group is the evidence for one category: its rules, strongest first.
type group struct {
	category   failure.Category
	priority   int
	confidence float64
	rules      []*Rule
}

// groups collects the matched rules by category, the winning category first: the
// category of the highest-priority matching rule (ties: higher confidence). A
// category's confidence combines its rules as independent evidence, 1 - Π(1 - c),
// capped at 0.99.
func groups(st *state) []*group {
	var gs []*group
	for _, r := range st.matched { // in priority order
		i := slices.IndexFunc(gs, func(g *group) bool { return g.category == r.Category })
		if i < 0 {
			gs = append(gs, &group{category: r.Category, priority: r.Priority, confidence: 1})
			i = len(gs) - 1
		}
		g := gs[i]
		g.rules = append(g.rules, r)
		g.confidence *= 1 - r.Confidence
	}
	for _, g := range gs {
		g.confidence = round(min(1-g.confidence, 0.99))
		slices.SortStableFunc(g.rules, func(a, b *Rule) int {
			return cmp.Or(b.Priority-a.Priority, cmp.Compare(b.Confidence, a.Confidence))
		})
	}
	slices.SortStableFunc(gs, func(a, b *group) int {
		return cmp.Or(b.priority-a.priority, cmp.Compare(b.confidence, a.confidence))
	})
	return gs
}

// decide turns the matched rules, the knowledge tables' hits and the model's
// prediction into a classification. Rules at least as confident as Authority decide
// alone; otherwise the model, when there is one, decides; a model below its minimum
// confidence abstains (unknown, not retried). Without a model the rules decide.
func (c *Classifier) decide(st *state, ev *failure.Event) failure.Classification {
	gs := groups(st)
	out := c.fromRules(st, gs)
	if m := c.opts.Model; m != nil && (len(gs) == 0 || gs[0].confidence < c.opts.Authority) {
		out = c.fromModel(st, ev, gs, out)
	}
	c.knowledgeEvidence(st, &out)
	if len(out.Evidence) > c.opts.MaxEvidence {
		out.Evidence = out.Evidence[:c.opts.MaxEvidence]
	}
	return out
}

// fromRules is the rules' classification: the winning group's category when it is
// confident enough, else unknown with every group as an alternative.
func (c *Classifier) fromRules(st *state, gs []*group) failure.Classification {
	out := failure.Classification{
		Category: failure.Unknown, Action: failure.NoRetry,
		Rules: []string{}, Evidence: []string{},
	}
	if len(gs) == 0 {
		return out
	}
	win := gs[0]
	alts := gs[1:]
	if win.confidence >= c.opts.MinConfidence {
		top := win.rules[0]
		out.Category, out.Retryable, out.Action = win.category, top.Retryable, top.Action
		out.Confidence = win.confidence
		for _, r := range win.rules {
			out.Rules = append(out.Rules, r.ID)
		}
	} else {
		alts = gs // nothing confident: every candidate is an alternative
	}
	out.Evidence = c.evidence(st, win.rules)
	for _, g := range alts {
		out.Alternatives = append(out.Alternatives, alternative(g))
	}
	return out
}

func round(x float64) float64 { return math.Round(x*1000) / 1000 }

// evidence returns the lines of the message and log tail that the rules' patterns
// match, in order, plus a line for the termination fields and usage the rules read.
func (c *Classifier) evidence(st *state, rules []*Rule) []string {
	env := &st.env
	var out []string
	var fields, usage, exception bool
	for _, r := range rules {
		fields = fields || r.idents["reason"] || r.idents["exitCode"] || r.idents["signal"]
		usage = usage || r.idents["memoryRatio"] || r.idents["gpuMemoryRatio"] || r.idents["usage"] ||
			r.Category == failure.OOMMemory || r.Category == failure.OOMGPU
		exception = exception || r.idents["exception"] || r.idents["exceptionName"]
	}
	if fields {
		s := fmt.Sprintf("reason: %q, exit code %d", env.Reason, env.ExitCode)
		if env.Signal > 0 {
			s += fmt.Sprintf(" (signal %d)", env.Signal)
		}
		out = append(out, s)
	}
	if usage && env.MemoryRatio > 0 {
		out = append(out, fmt.Sprintf("peak memory %s of the %s limit (%.0f%%)",
			failure.FormatBytes(int64(env.Usage.PeakMemory)), failure.FormatBytes(int64(env.Resources.Memory)), 100*env.MemoryRatio))
	}
	if usage && env.GPUMemoryRatio > 0 {
		out = append(out, fmt.Sprintf("peak GPU memory %s on a %s (%.0f%%)",
			failure.FormatBytes(int64(env.Usage.PeakGPUMemory)), env.Resources.GPUType, 100*env.GPUMemoryRatio))
	}
	for _, t := range [...]struct {
		scope           scope
		text, lowerText string
	}{{scopeMessage, env.Message, env.MessageLower}, {scopeLog, env.Log, env.LogLower}} {
		if len(out) >= c.opts.MaxEvidence || t.text == "" {
			continue
		}
		for _, line := range st.matchedLines(t.scope, t.text, t.lowerText, rules) {
			if len(out) >= c.opts.MaxEvidence {
				break
			}
			if s := clip(strings.TrimSpace(line), maxEvidenceLine); s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	if s := clip(strings.TrimSpace(env.exceptionLine), maxEvidenceLine); exception && s != "" &&
		!slices.Contains(out, s) && len(out) < c.opts.MaxEvidence {
		out = append(out, s)
	}
	return out
}

// maxOccurrences bounds the occurrences of one pattern looked at for evidence.
const maxOccurrences = 16

// matchedLines returns the lines of text, in order, that the rules' patterns for scope
// match in lower, the lower-cased text (which has the same lines).
func (st *state) matchedLines(sc scope, text, lower string, rules []*Rule) []string {
	var starts []int // offsets in lower of the matched lines' starts
	for _, r := range rules {
		for _, p := range r.patterns {
			if p.scope != scopeAny && p.scope != sc {
				continue
			}
			if p.needs != nil && !st.occursIn(sc, p.needs) {
				continue // cannot match in this text
			}
			n := 0
			if p.re != nil {
				p.re.lines(lower, st, func(start, _ int) bool {
					starts = append(starts, start)
					n++
					return n < maxOccurrences
				})
				continue
			}
			for i := 0; i < len(lower) && n < maxOccurrences; n++ {
				j := strings.Index(lower[i:], p.literal)
				if j < 0 {
					break
				}
				j += i
				starts = append(starts, strings.LastIndexByte(lower[:j], '\n')+1)
				i = j + len(p.literal)
			}
		}
	}
	if len(starts) == 0 {
		return nil
	}
	slices.Sort(starts)
	starts = slices.Compact(starts)
	// Walk both texts line by line: the n-th line of lower is the n-th line of text.
	out := make([]string, 0, len(starts))
	lpos, tpos := 0, 0
	for _, s := range starts {
		for lpos < s {
			nl := strings.IndexByte(lower[lpos:], '\n')
			tn := strings.IndexByte(text[tpos:], '\n')
			if nl < 0 || tn < 0 {
				return out
			}
			lpos += nl + 1
			tpos += tn + 1
		}
		line, _, _ := strings.Cut(text[tpos:], "\n")
		out = append(out, line)
	}
	return out
}

// maxEvidenceLine bounds one evidence line, in bytes.
const maxEvidenceLine = 300

// clip cuts s to at most n bytes on a rune boundary, marking the cut with "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !utf8RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

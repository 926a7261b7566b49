package classifier

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/autofix/autofix/failure"
)

// retryVeto is the model's P(a retry can fix it) below which a retry the rules call
// for, without the authority to decide alone, is not made.
const retryVeto = 0.3

// maxKnowledgeEvidence bounds the knowledge hits listed in a result's evidence.
const maxKnowledgeEvidence = 3

// fromModel is the model's classification of a failure the rules are not sure of
// (rules is theirs). The model's category stands when its calibrated probability
// reaches its minimum confidence, and a retry is called for when the calibrated P(a
// retry can fix it) reaches the model's threshold and the category is one a retry
// can fix. Where the rules have an answer at least as confident as the model's, it
// stands, except a retry the model thinks unlikely to help (P below retryVeto). Below
// its minimum confidence the model abstains and the rules' answer stands (unknown,
// not retried, when they have none).
func (c *Classifier) fromModel(st *state, ev *failure.Event, gs []*group, rules failure.Classification) failure.Classification {
	m := c.opts.Model
	pred := m.predict(&st.features, c.features(st, ev, m.ruleFeatures))
	conf := math.Round(pred.Confidence*1000) / 1000
	line := fmt.Sprintf("the learned model says %s (p=%.2f; P(a retry fixes it)=%.2f)", pred.Category, pred.Confidence, pred.PRetry)
	// keep is the rules' answer, with what the model said after it.
	keep := func(note string) failure.Classification {
		rules.Evidence = c.withLine(rules.Evidence, line+note)
		if pred.Category != rules.Category {
			rules.Alternatives = append(rules.Alternatives, failure.Alternative{Category: pred.Category, Confidence: conf})
		}
		return rules
	}
	if rules.Category != failure.Unknown && rules.Confidence >= pred.Confidence {
		// The rules are surer than the model: their category stands, but not a retry
		// the model thinks unlikely to help.
		if rules.Retryable && pred.PRetry < retryVeto {
			rules.Retryable, rules.Action = false, failure.NoRetry
			return keep(fmt.Sprintf(": a retry is unlikely to help (below %.2f), so none is made", retryVeto))
		}
		return keep("")
	}
	minConf := m.minConfidence
	if c.opts.ModelMinConfidence > 0 {
		minConf = c.opts.ModelMinConfidence
	}
	if pred.Confidence < minConf || pred.Category == failure.Unknown {
		// The model abstains: the rules' answer stands, unknown when they have none.
		return keep(", too unsure to act on")
	}
	out := failure.Classification{Category: pred.Category, Confidence: conf, Action: failure.NoRetry, Rules: []string{}, Learned: true}
	if pred.PRetry >= m.retryThreshold && pred.Category.DefaultRetryable() {
		out.Retryable, out.Action = true, pred.Category.DefaultAction()
	}
	var support []*Rule
	for _, g := range gs {
		if g.category == pred.Category {
			support = g.rules
			for _, r := range g.rules {
				out.Rules = append(out.Rules, r.ID)
			}
			if out.Retryable && g.rules[0].Retryable {
				out.Action = g.rules[0].Action // the rule knows the finer fix (/dev/shm)
			}
		}
	}
	if len(gs) > 0 && gs[0].category == pred.Category {
		// The rules' evidence is already of these rules.
		out.Evidence = append([]string{line}, rules.Evidence...)
	} else {
		out.Evidence = append([]string{line}, c.evidence(st, support)...)
	}
	if len(support) == 0 {
		// No rule points at the lines that say it: show the last error lines the model read.
		lines := st.features.lines
		for i := max(0, len(lines)-2); i < len(lines) && len(out.Evidence) < c.opts.MaxEvidence; i++ {
			if s := clip(strings.TrimSpace(lines[i]), maxEvidenceLine); s != "" && !slices.Contains(out.Evidence, s) {
				out.Evidence = append(out.Evidence, s)
			}
		}
	}
	for _, g := range gs {
		if g.category != pred.Category {
			out.Alternatives = append(out.Alternatives, alternative(g))
		}
	}
	return out
}

func alternative(g *group) failure.Alternative {
	a := failure.Alternative{Category: g.category, Confidence: g.confidence}
	for _, r := range g.rules {
		a.Rules = append(a.Rules, r.ID)
	}
	return a
}

// withLine adds line to evidence, in place of its last line when it is full: what
// the model said matters more than one more line of the log.
func (c *Classifier) withLine(evidence []string, line string) []string {
	if len(evidence) >= c.opts.MaxEvidence {
		evidence = evidence[:c.opts.MaxEvidence-1]
	}
	return append(evidence, line)
}

// knowledgeEvidence adds the strongest knowledge hits to the evidence.
func (c *Classifier) knowledgeEvidence(st *state, out *failure.Classification) {
	n := 0
	for _, h := range st.hits {
		if n == maxKnowledgeEvidence || len(out.Evidence) >= c.opts.MaxEvidence {
			return
		}
		e := h.Entry
		verdict := "not retryable"
		if e.Retryable {
			verdict = "retryable"
		}
		out.Evidence = append(out.Evidence, fmt.Sprintf("%s %s (%q): %s, %s, %.2f", e.Table, e.Key, h.Match, e.Category, verdict, e.Confidence))
		n++
	}
}

// features computes the model's features of ev from the prepared state.
func (c *Classifier) features(st *state, ev *failure.Event, ruleFeatures bool) []uint32 {
	sig := &st.signals
	*sig = signals{reason: ev.Failure.Reason, exitCode: ev.Failure.ExitCode, kind: string(ev.Job.Kind),
		exception: st.env.Exception, hits: st.hits,
		memHigh: st.env.MemoryRatio >= 0.95, gpuHigh: st.env.GPUMemoryRatio >= 0.95}
	if !c.rules.uses["exception"] && !c.rules.uses["exceptionName"] {
		sig.exception, _ = lastException(ev.Failure.LogTail)
	}
	if ruleFeatures {
		sig.rules = st.matched
	}
	return st.features.features(ev.Failure.Message, ev.Failure.LogTail, st.env.LogLower, sig)
}

// modelFeatures returns a copy of the model's features of ev under c's rules and
// knowledge, for training.
func (c *Classifier) modelFeatures(ev *failure.Event, ruleFeatures bool) []uint32 {
	st := c.pool.Get().(*state)
	defer c.pool.Put(st)
	st.prepare(ev, c.rules, c.scan)
	defer st.release()
	c.match(st, nil)
	return slices.Clone(c.features(st, ev, ruleFeatures))
}

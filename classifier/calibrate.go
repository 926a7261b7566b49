package classifier

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// A rule's confidence is its author's estimate. Where the labelled corpus shows a
// rule deciding wrongly more often than that, the model carries the rule's measured
// rate, and the classifier holds the rule to it: a rule that is often wrong loses its
// authority and its say against the model, whatever its file claims.

// RuleCalibration is how often a rule was right when it decided a labelled failure:
// when it led the rules' winning category, the share of those failures whose category
// and retry decision the rules got right.
type RuleCalibration struct {
	Rule string `json:"rule"`
	// Digest identifies the rule's condition and answer as measured; a rule changed
	// since is not held to the measure.
	Digest string `json:"digest"`
	// Decided and Right count the failures the rule decided and those it got right.
	Decided int `json:"decided"`
	Right   int `json:"right"`
	// Confidence is the rule's rate, smoothed toward its own confidence
	// (calibrationPrior failures' worth); always below its own confidence.
	Confidence float64 `json:"confidence"`
}

const (
	// calibrationMinDecided is how many labelled failures a rule must have decided
	// for its rate to be measured.
	calibrationMinDecided = 5
	// calibrationPrior is how many failures' worth of weight the rule's own
	// confidence has in its smoothed rate.
	calibrationPrior = 4
	// maxRuleCalibrations bounds an artifact's calibrations (untrusted input).
	maxRuleCalibrations = 1 << 14
)

// ruleDigest identifies what a rule says: its id, condition and answer.
func ruleDigest(r *Rule) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%t", r.ID, r.Expr, r.Category, r.Retryable)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// calibrateRules measures the rules of c (whose model is not used) on items: for each
// rule that decided at least calibrationMinDecided of them, its smoothed rate of right
// answers, where that is below its own confidence.
func calibrateRules(c *Classifier, items []Labelled) []RuleCalibration {
	type tally struct{ decided, right int }
	tallies := map[*Rule]*tally{}
	st := c.pool.Get().(*state)
	defer c.pool.Put(st)
	for i := range items {
		it := &items[i]
		st.prepare(&it.Event, c.rules, c.scan)
		c.match(st, nil)
		gs := groups(st)
		st.release()
		if len(gs) == 0 || gs[0].confidence < c.opts.MinConfidence {
			continue // the rules did not decide
		}
		top := gs[0].rules[0]
		t := tallies[top]
		if t == nil {
			t = &tally{}
			tallies[top] = t
		}
		t.decided++
		if gs[0].category == it.Expected.Category && top.Retryable == it.Expected.Retryable {
			t.right++
		}
	}
	var out []RuleCalibration
	for r, t := range tallies {
		if t.decided < calibrationMinDecided {
			continue
		}
		rate := (float64(t.right) + calibrationPrior*r.Confidence) / float64(t.decided+calibrationPrior)
		rate = math.Round(rate*1000) / 1000
		if rate < r.Confidence {
			out = append(out, RuleCalibration{Rule: r.ID, Digest: ruleDigest(r), Decided: t.decided, Right: t.right, Confidence: rate})
		}
	}
	slices.SortFunc(out, func(a, b RuleCalibration) int { return cmp.Compare(a.Rule, b.Rule) })
	return out
}

// calibration maps the rules of rs that m measured, unchanged since, to their
// measured confidence.
func (m *Model) calibration(rs *RuleSet) map[*Rule]RuleCalibration {
	if m == nil || len(m.ruleCalibration) == 0 {
		return nil
	}
	byID := make(map[string]RuleCalibration, len(m.ruleCalibration))
	for _, rc := range m.ruleCalibration {
		byID[rc.Rule] = rc
	}
	out := map[*Rule]RuleCalibration{}
	for _, r := range rs.rules {
		if rc, ok := byID[r.ID]; ok && rc.Digest == ruleDigest(r) {
			out[r] = rc
		}
	}
	return out
}

// calibrate holds each group led by a measured rule to the rule's measured
// confidence, and returns the evidence line for the winning group when it did so.
func (c *Classifier) calibrate(gs []*group) string {
	if len(c.cal) == 0 || len(gs) == 0 {
		return ""
	}
	var note string
	for i, g := range gs {
		rc, ok := c.cal[g.rules[0]]
		if !ok || rc.Confidence >= g.confidence {
			continue
		}
		if i == 0 {
			note = "rule " + rc.Rule + " was right on " + strconv.Itoa(rc.Right) + " of the " + strconv.Itoa(rc.Decided) +
				" labelled failures it decided: confidence " + strconv.FormatFloat(rc.Confidence, 'f', 2, 64) +
				", not " + strconv.FormatFloat(g.confidence, 'f', 2, 64)
		}
		g.confidence = rc.Confidence
	}
	slices.SortStableFunc(gs, func(a, b *group) int {
		return cmp.Or(b.priority-a.priority, cmp.Compare(b.confidence, a.confidence))
	})
	return note
}

// validCalibrations checks an artifact's rule calibrations.
func validCalibrations(rcs []RuleCalibration) error {
	if len(rcs) > maxRuleCalibrations {
		return fmt.Errorf("ruleCalibration: %d entries: want at most %d", len(rcs), maxRuleCalibrations)
	}
	seen := map[string]bool{}
	for i, rc := range rcs {
		switch {
		case rc.Rule == "" || seen[rc.Rule]:
			return fmt.Errorf("ruleCalibration[%d]: rule %q: empty or repeated", i, rc.Rule)
		case rc.Decided < 1 || rc.Right < 0 || rc.Right > rc.Decided:
			return fmt.Errorf("ruleCalibration[%d]: right %d of %d decided: want 0 <= right <= decided, decided >= 1", i, rc.Right, rc.Decided)
		case !(rc.Confidence > 0 && rc.Confidence < 1):
			return fmt.Errorf("ruleCalibration[%d]: confidence %v: want (0, 1)", i, rc.Confidence)
		}
		seen[rc.Rule] = true
	}
	return nil
}

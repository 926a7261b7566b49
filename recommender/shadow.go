package recommender

import (
	"fmt"
	"math"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
)

// versioned is a set of models and its version in the model registry (0: not from
// it).
type versioned struct {
	version int
	m       *models.Models
}

// SetShadow evaluates version of the models in shadow: every recommendation the
// models decide (a retryable failure) also says what these models would have
// decided (Recommendation.Shadow), which changes nothing. A nil m stops it. A
// shadow of the version in use is not evaluated. Safe to call while
// recommendations are being made.
func (r *Recommender) SetShadow(version int, m *models.Models) {
	if m == nil {
		r.shadow.Store(nil)
		return
	}
	r.shadow.Store(&versioned{version: version, m: m})
}

// Shadowed is the version evaluated in shadow; 0 when none is.
func (r *Recommender) Shadowed() int {
	if sh := r.shadow.Load(); sh != nil {
		return sh.version
	}
	return 0
}

// shadowOf is what the shadowed models sh would have decided of ev, whose decision
// by the active models is rec: the same search with their predictions, and their
// P(success) of the option rec chose. A panic in the candidate's code is the
// shadow's error, never the decision's.
func (r *Recommender) shadowOf(sh *versioned, ev *failure.Event, ctx *models.Context, cl *failure.Classification, nodes *view,
	rec *failure.Recommendation, scratch *models.Scratch) (s *failure.Shadow) {
	s = &failure.Shadow{Version: sh.version}
	defer func() {
		if p := recover(); p != nil {
			*s = failure.Shadow{Version: sh.version, Error: fmt.Sprintf("the candidate's prediction failed: %v", p)}
		}
	}()
	prob := r.problem(sh.m, ev, ctx, cl, nodes, scratch)
	res, _ := r.solve(prob, ev)
	if res.Chosen >= 0 && res.Options[0].PFix >= r.opts.MinPFix {
		o := res.Options[0]
		roundFigures(&o)
		if o.Check() == nil {
			o.Params = copyMap(o.Params)
			o.Changes = changes(ev, &o, &r.opts.Catalogue)
			s.Retry, s.Option = true, &o
		}
	}
	chosen, ok := rec.ChosenOption()
	if ok {
		o := chosen
		prob.Predictor.Predict(&o)
		if math.IsNaN(o.PSuccess) || o.PSuccess < 0 || o.PSuccess > 1 {
			return &failure.Shadow{Version: sh.version, Error: fmt.Sprintf("the candidate's P(success) is %g", o.PSuccess)}
		}
		s.PSuccess = round(o.PSuccess, 4)
	}
	s.Changed = s.Retry != ok || s.Retry && !s.Option.SameConfiguration(&chosen)
	return s
}

package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
)

// Shadow evaluation: a registered version that is not active predicts every live
// decision next to the active version (the recommender's SetShadow), its predictions
// are recorded with the decisions, and as the attempts end both versions are scored
// on the same decisions (ShadowReport). Promote's gates read these figures once there
// are enough of them.

// ShadowChange asks for a version to be evaluated in shadow, or for the evaluation
// to stop.
type ShadowChange struct {
	// Actor is who asks (required); Reason says why (optional, at most
	// ledger.MaxModelReason bytes).
	Actor, Reason string
}

func (c *ShadowChange) check() error {
	switch {
	case c.Actor == "":
		return &ledger.ModelError{Field: "actor", Problem: "required"}
	case len(c.Reason) > ledger.MaxModelReason:
		return &ledger.ModelError{Field: "reason", Problem: fmt.Sprintf("%d bytes is over the %d-byte limit", len(c.Reason), ledger.MaxModelReason)}
	}
	return nil
}

// StartShadow makes version the one evaluated in shadow (in place of any other):
// every replica picks it up at its next Poll. A version the registry does not hold
// is ledger.ErrNotFound; the active version, the one already evaluated, or one this
// autofix cannot load, a conflict.
func (r *Registry) StartShadow(ctx context.Context, version int, c ShadowChange) (ledger.ModelShadow, error) {
	if err := c.check(); err != nil {
		return ledger.ModelShadow{}, err
	}
	if version <= 0 {
		return ledger.ModelShadow{}, &ledger.ModelError{Field: "version", Problem: fmt.Sprintf("%d, want a version", version)}
	}
	if _, _, err := r.load(ctx, version); err != nil {
		return ledger.ModelShadow{}, err
	}
	sh, err := r.o.Ledger.SetModelShadow(ctx, ledger.ModelShadow{Version: version, Actor: c.Actor,
		Reason: strings.TrimSpace(c.Reason), At: r.o.Now()})
	if err == nil {
		r.log.Info("model version evaluated in shadow", "version", version, "by", c.Actor)
	}
	return sh, err
}

// StopShadow ends the shadow evaluation; a conflict when none is under way. The
// predictions recorded stay, and ShadowReport still scores them.
func (r *Registry) StopShadow(ctx context.Context, c ShadowChange) (ledger.ModelShadow, error) {
	if err := c.check(); err != nil {
		return ledger.ModelShadow{}, err
	}
	sh, err := r.o.Ledger.SetModelShadow(ctx, ledger.ModelShadow{Actor: c.Actor, Reason: strings.TrimSpace(c.Reason), At: r.o.Now()})
	if err == nil {
		r.log.Info("shadow evaluation stopped", "by", c.Actor)
	}
	return sh, err
}

// ShadowState is the latest change of the version evaluated in shadow (Version 0:
// none).
func (r *Registry) ShadowState(ctx context.Context) (ledger.ModelShadow, error) {
	return r.o.Ledger.ModelShadowState(ctx)
}

// Shadowed returns the version this process evaluates in shadow (Version 0 and nil
// Models when none).
func (r *Registry) Shadowed() InUse {
	if sh := r.shadow.Load(); sh != nil {
		return *sh
	}
	return InUse{}
}

// pollShadow makes the version evaluated in shadow the ledger's: it loads a new one
// and calls OnShadow (with nil models when the evaluation stopped, or when the
// version shadowed became the active one). A version that does not load is logged
// once, and nothing is evaluated meanwhile. The caller holds r.mu.
func (r *Registry) pollShadow(ctx context.Context) error {
	st, err := r.o.Ledger.ModelShadowState(ctx)
	if err != nil {
		return err
	}
	want := st.Version
	if want == r.inUse.Load().Version {
		want = 0 // promoted: the active version needs no shadow
	}
	cur := r.Shadowed()
	if want == cur.Version || want != 0 && want == r.shadowFailed {
		return nil
	}
	var m *models.Models
	if want != 0 {
		_, m, err = r.load(ctx, want)
		var le *LoadError
		if errors.As(err, &le) {
			r.log.Error("the model version to evaluate in shadow does not load: nothing is evaluated in shadow",
				"version", want, "err", le.Err)
			r.shadowFailed = want
			if cur.Version != 0 {
				r.setShadow(InUse{})
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	r.shadowFailed = 0
	r.setShadow(InUse{Version: want, Models: m})
	return nil
}

func (r *Registry) setShadow(in InUse) {
	if in.Version == 0 {
		r.shadow.Store(nil)
	} else {
		r.shadow.Store(&in)
	}
	if r.o.OnShadow != nil {
		r.o.OnShadow(in.Version, in.Models)
	}
}

// ShadowReport is a candidate version scored in shadow against the active version
// it ran next to, on the same live decisions.
type ShadowReport struct {
	// Version is the candidate, ActiveVersion the version that decided.
	Version, ActiveVersion int
	// Since and Until bound when the decisions were made: [Since, Until).
	Since, Until time.Time
	// Decisions is how many decisions the candidate saw in the window; Errors how
	// many of them it decided nothing of (its prediction failed).
	Decisions, Errors int
	// Pending is how many of the active's retries may still run and have not ended
	// (awaiting review, approved or submitted); Edited how many ended having run
	// another configuration than the one chosen (a reviewer picked another option or
	// edited it): neither version predicted what ran, so they are not scored.
	Pending, Edited int
	// Active and Candidate are the two versions' P(success) of the active's
	// choice, scored against how its attempts ended, where they ran that choice:
	// the latest MaxOutcomes, at most MaxPerNamespace of any one namespace's.
	Active, Candidate ledger.ModelMetrics
	// Changes are the decisions the candidate would have made otherwise.
	Changes ShadowChanges
}

// ShadowChanges are the decisions a candidate would have changed, and what is known
// of what that would have cost. Only the active's choices ran: what the candidate
// would have chosen instead is priced by its own prediction.
type ShadowChanges struct {
	// Total is how many decisions it would have changed.
	Total int
	// Retry is how many it would have retried where the active did not;
	// RetryExpectedCost the candidate's expected cost of those retries.
	Retry             int
	RetryExpectedCost float64
	// NoRetry is how many it would not have retried where the active did. Of those
	// whose attempts ended, LostFixes succeeded (fixes it would have given up), and
	// SavedSpend is what the failed ones cost (spend it would have saved).
	NoRetry    int
	LostFixes  int
	SavedSpend float64
	// Configuration is how many both retried, with other configurations; of those
	// that ended, Ended and Succeeded (with the active's choice). ActiveExpectedCost
	// and CandidateExpectedCost are each version's expected cost of its own choice,
	// over all of them.
	Configuration                             int
	Ended, Succeeded                          int
	ActiveExpectedCost, CandidateExpectedCost float64
}

// ShadowReport scores version's shadow predictions next to the active version over
// the gates' window: the latest MaxOutcomes decisions, at most MaxPerNamespace of any
// one namespace's. A version the registry does not hold is ledger.ErrNotFound. A
// report of the same versions made less than ShadowReportReuse ago is returned
// again: the models page and the API read it on every view, and it reads up to
// MaxOutcomes rows. Evaluate scores afresh.
func (r *Registry) ShadowReport(ctx context.Context, version int) (ShadowReport, error) {
	active, err := r.o.Ledger.ActiveModel(ctx)
	if err != nil {
		return ShadowReport{}, err
	}
	r.reportMu.Lock()
	c := r.report
	r.reportMu.Unlock()
	if c != nil && c.Version == version && c.ActiveVersion == active && r.o.Now().Sub(c.Until) < ShadowReportReuse {
		return *c, nil
	}
	rep, err := r.shadowReport(ctx, version)
	if err == nil {
		r.reportMu.Lock()
		r.report = &rep
		r.reportMu.Unlock()
	}
	return rep, err
}

// ShadowReportReuse is how long ShadowReport returns a report again.
const ShadowReportReuse = time.Minute

// maxShadowDecisions bounds the decisions a report counts (a streaming scan; the
// latest first).
const maxShadowDecisions = 1_000_000

// shadowReport is ShadowReport, scored now.
func (r *Registry) shadowReport(ctx context.Context, version int) (ShadowReport, error) {
	out := ShadowReport{Version: version}
	if _, err := r.o.Ledger.Model(ctx, version); err != nil {
		return out, err
	}
	active, err := r.o.Ledger.ActiveModel(ctx)
	if err != nil {
		return out, err
	}
	out.ActiveVersion = active
	out.Until = r.o.Now().UTC()
	out.Since = out.Until.Add(-r.o.Gates.Window)
	ch := &out.Changes
	// Every decision in the window, for the counts (the candidate's errors among
	// them, which a gate reads): no namespace cap, so that errors and changes past a
	// busy namespace's latest are seen.
	err = r.o.Ledger.EachShadowPrediction(ctx, ledger.ShadowFilter{Version: version, ActiveVersion: active,
		Since: out.Since, Until: out.Until, Limit: maxShadowDecisions},
		func(p *ledger.ShadowPrediction) error {
			out.Decisions++
			if p.Error != "" {
				out.Errors++
				return nil
			}
			ended := p.Outcome == ledger.Succeeded || p.Outcome == ledger.Failed
			if p.ActiveRetry && p.Outcome == "" &&
				(p.State == ledger.PendingReview || p.State == ledger.Approved || p.State == ledger.Submitted) {
				out.Pending++
			}
			if p.ActiveRetry && ended && !p.Ran {
				out.Edited++
			}
			if !p.Changed {
				return nil
			}
			ch.Total++
			switch {
			case p.CandidateRetry && !p.ActiveRetry:
				ch.Retry++
				ch.RetryExpectedCost += p.CandidateCost
			case !p.CandidateRetry && p.ActiveRetry:
				ch.NoRetry++
				switch p.Outcome {
				case ledger.Succeeded:
					ch.LostFixes++
				case ledger.Failed:
					ch.SavedSpend += p.AttemptCost
				}
			default:
				ch.Configuration++
				ch.ActiveExpectedCost += p.ActiveCost
				ch.CandidateExpectedCost += p.CandidateCost
				if ended {
					ch.Ended++
					if p.Outcome == ledger.Succeeded {
						ch.Succeeded++
					}
				}
			}
			return nil
		})
	if err != nil {
		return out, err
	}
	// The decisions that can be scored: the latest MaxOutcomes, at most
	// MaxPerNamespace of a namespace's, capped among themselves (a busy namespace's
	// newest decisions, not ended yet, take no place from its ended ones).
	var pa, pc, y []float64
	err = r.o.Ledger.EachShadowPrediction(ctx, ledger.ShadowFilter{Version: version, ActiveVersion: active, Ended: true,
		Since: out.Since, Until: out.Until, Limit: r.o.Gates.MaxOutcomes, MaxPerNamespace: r.o.Gates.MaxPerNamespace},
		func(p *ledger.ShadowPrediction) error {
			if !p.Ran {
				return nil // counted as edited above
			}
			succeeded := 0.0
			if p.Outcome == ledger.Succeeded {
				succeeded = 1
			}
			pa, pc, y = append(pa, p.PActive), append(pc, p.PCandidate), append(y, succeeded)
			return nil
		})
	if err != nil {
		return out, err
	}
	out.Active, out.Candidate = metrics(models.Calibrate(pa, y)), metrics(models.Calibrate(pc, y))
	return out, nil
}

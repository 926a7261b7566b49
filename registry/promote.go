package registry

import (
	"context"
	"fmt"
	"strings"

	"github.com/autofix/autofix/ledger"
)

// Promotion asks for a version to be made active.
type Promotion struct {
	// Actor is who asks (required).
	Actor string
	// Force makes the version active even if its gates fail; it needs a Reason.
	Force bool
	// Reason says why (required to force and to roll back; at most
	// ledger.MaxModelReason bytes).
	Reason string
}

// GatesError is Promote's error when the gates fail and the promotion is not
// forced. It is a conflict (errors.Is(err, ledger.ErrConflict)).
type GatesError struct {
	Evaluation Evaluation
}

func (e *GatesError) Error() string {
	return fmt.Sprintf("model version %d is not promoted: %s (an admin may force it, with a reason)",
		e.Evaluation.Candidate.Version, strings.Join(e.Evaluation.Gates.Failed, "; "))
}

// Is makes a GatesError a ledger.ErrConflict.
func (e *GatesError) Is(target error) bool { return target == ledger.ErrConflict }

// check refuses a request that can never be recorded before anything is computed.
func (p *Promotion) check(rollback bool) error {
	switch {
	case p.Actor == "":
		return &ledger.ModelError{Field: "actor", Problem: "required"}
	case (p.Force || rollback) && strings.TrimSpace(p.Reason) == "":
		what := "force a promotion past its gates"
		if rollback {
			what = "roll back"
		}
		return &ledger.ModelError{Field: "reason", Problem: "required to " + what + ": say why"}
	case len(p.Reason) > ledger.MaxModelReason:
		return &ledger.ModelError{Field: "reason", Problem: fmt.Sprintf("%d bytes is over the %d-byte limit", len(p.Reason), ledger.MaxModelReason)}
	}
	return nil
}

// Promote makes version the active one if it passes the gates against the active
// version (Evaluate), or, with p.Force and a reason, whatever the gates say. The
// promotion is recorded with its figures (action promote, or force when a gate
// failed), and every replica picks it up at its next Poll. Errors: Evaluate's; a
// *GatesError when a gate fails unforced; a conflict when another promotion came
// first; a *ledger.ModelError naming the field of a request that can never be
// recorded.
func (r *Registry) Promote(ctx context.Context, version int, p Promotion) (ledger.ModelPromotion, Evaluation, error) {
	if err := p.check(false); err != nil {
		return ledger.ModelPromotion{}, Evaluation{}, err
	}
	ev, err := r.Evaluate(ctx, version)
	if err != nil {
		return ledger.ModelPromotion{}, ev, err
	}
	action := ledger.ModelPromote
	if !ev.Gates.Passed() {
		if !p.Force {
			return ledger.ModelPromotion{}, ev, &GatesError{Evaluation: ev}
		}
		action = ledger.ModelForce
	}
	rec, err := r.o.Ledger.PromoteModel(ctx, ledger.ModelPromotion{From: ev.Active.Version, To: version, Action: action,
		Actor: p.Actor, Reason: strings.TrimSpace(p.Reason), At: r.o.Now(), Gates: &ev.Gates})
	if err != nil {
		return ledger.ModelPromotion{}, ev, err
	}
	r.log.Info("model version promoted", "from", rec.From, "to", rec.To, "action", rec.Action, "by", rec.Actor,
		"outcomes", ev.Gates.Outcomes, "failedGates", len(ev.Gates.Failed))
	return rec, ev, nil
}

// Rollback makes version, one registered before the active version, the active one
// again, whatever the gates say: p needs a reason. The gates' figures are computed
// and recorded all the same. Errors as Promote's (never a *GatesError); a version
// that is not older than the active one is a *ledger.ModelError of field version.
func (r *Registry) Rollback(ctx context.Context, version int, p Promotion) (ledger.ModelPromotion, Evaluation, error) {
	if err := p.check(true); err != nil {
		return ledger.ModelPromotion{}, Evaluation{}, err
	}
	active, err := r.o.Ledger.ActiveModel(ctx)
	if err != nil {
		return ledger.ModelPromotion{}, Evaluation{}, err
	}
	if version >= active {
		return ledger.ModelPromotion{}, Evaluation{}, &ledger.ModelError{Field: "version",
			Problem: fmt.Sprintf("%d: a rollback goes to a version registered before the active %d; promote a later one", version, active)}
	}
	ev, err := r.Evaluate(ctx, version)
	if err != nil {
		return ledger.ModelPromotion{}, ev, err
	}
	rec, err := r.o.Ledger.PromoteModel(ctx, ledger.ModelPromotion{From: ev.Active.Version, To: version, Action: ledger.ModelRollback,
		Actor: p.Actor, Reason: strings.TrimSpace(p.Reason), At: r.o.Now(), Gates: &ev.Gates})
	if err != nil {
		return ledger.ModelPromotion{}, ev, err
	}
	r.log.Info("model version rolled back", "from", rec.From, "to", rec.To, "by", rec.Actor, "reason", rec.Reason)
	return rec, ev, nil
}

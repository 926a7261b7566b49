package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/autofix/autofix/failure"
)

// ModelShadow is one change of the version evaluated in shadow.
type ModelShadow struct {
	// Seq numbers the changes from 1 (0: no change was ever made).
	Seq int64
	// Version is the version evaluated from then on; 0 stops the evaluation.
	Version int
	// Actor is who changed it, At when, Reason why.
	Actor  string
	Reason string
	At     time.Time
}

// SetModelShadow makes sh.Version the version evaluated in shadow (0: none) at sh.At
// (now when zero), with an audit row (event id "", action "model-shadow"), and
// returns the change as recorded. A version the registry does not hold is
// ErrNotFound; the active version, or the one already in shadow, is ErrConflict;
// an actor or reason that can never be recorded is a *ModelError.
func (s *Store) SetModelShadow(ctx context.Context, sh ModelShadow) (ModelShadow, error) {
	if sh.Version < 0 {
		return ModelShadow{}, &ModelError{"version", fmt.Sprintf("%d, want a version or 0", sh.Version)}
	}
	if sh.Actor == "" {
		return ModelShadow{}, &ModelError{"actor", "required"}
	}
	if err := checkText("actor", sh.Actor, maxActor, false); err != nil {
		return ModelShadow{}, err
	}
	if err := checkText("reason", sh.Reason, MaxModelReason, true); err != nil {
		return ModelShadow{}, err
	}
	sh.At = atOrNow(sh.At).UTC()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockModels(ctx, tx); err != nil {
			return err
		}
		cur, err := modelShadow(ctx, tx)
		if err != nil {
			return err
		}
		if cur.Version == sh.Version {
			if sh.Version == 0 {
				return fmt.Errorf("no model version is evaluated in shadow: %w", ErrConflict)
			}
			return fmt.Errorf("model version %d is already evaluated in shadow: %w", sh.Version, ErrConflict)
		}
		detail := fmt.Sprintf("shadow evaluation of model version %d stopped", cur.Version)
		if sh.Version != 0 {
			active, err := activeModel(ctx, tx)
			if err != nil {
				return err
			}
			if active == sh.Version {
				return fmt.Errorf("model version %d is the active one: %w", sh.Version, ErrConflict)
			}
			if _, err := s.modelVersion(ctx, tx, sh.Version, false); err != nil {
				return err
			}
			detail = fmt.Sprintf("model version %d evaluated in shadow of the active version %d", sh.Version, active)
			if cur.Version != 0 {
				detail += fmt.Sprintf(" (instead of version %d)", cur.Version)
			}
		}
		if sh.Reason != "" {
			detail += "; reason: " + sh.Reason
		}
		sh.Seq = cur.Seq + 1
		if _, err := tx.ExecContext(ctx, s.q("INSERT INTO model_shadows (seq, version, actor, reason, created_at) VALUES "+placeholders(1, 5)),
			sh.Seq, sh.Version, sh.Actor, sh.Reason, nanos(sh.At)); err != nil {
			return fmt.Errorf("set the shadow model: %w", err)
		}
		return s.addAudit(ctx, tx, "", sh.At, sh.Actor, "model-shadow", "", "", detail)
	})
	if err != nil {
		return ModelShadow{}, err
	}
	return sh, nil
}

// endShadowOf ends the shadow evaluation of the version p made active, if it is the
// one evaluated: an active version needs none, and a rollback away from it must
// not start it again. The caller holds the registry's lock.
func (s *Store) endShadowOf(ctx context.Context, tx *sql.Tx, p *ModelPromotion) error {
	cur, err := modelShadow(ctx, tx)
	if err != nil || cur.Version != p.To {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q("INSERT INTO model_shadows (seq, version, actor, reason, created_at) VALUES "+placeholders(1, 5)),
		cur.Seq+1, 0, p.Actor, "made active ("+string(p.Action)+")", nanos(p.At)); err != nil {
		return fmt.Errorf("end the shadow evaluation: %w", err)
	}
	return s.addAudit(ctx, tx, "", p.At, p.Actor, "model-shadow", "", "",
		fmt.Sprintf("shadow evaluation of model version %d stopped: it was made active (%s)", p.To, p.Action))
}

// ModelShadowState is the latest change of the version evaluated in shadow: its
// Version is the one evaluated now (0: none, and Seq 0 when none ever was).
// Replicas poll it: it reads one row.
func (s *Store) ModelShadowState(ctx context.Context) (ModelShadow, error) {
	return modelShadow(ctx, s.r)
}

func modelShadow(ctx context.Context, db querier) (ModelShadow, error) {
	var (
		sh ModelShadow
		at int64
	)
	err := db.QueryRowContext(ctx, "SELECT seq, version, actor, reason, created_at FROM model_shadows ORDER BY seq DESC LIMIT 1").
		Scan(&sh.Seq, &sh.Version, &sh.Actor, &sh.Reason, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return ModelShadow{}, nil
	}
	if err != nil {
		return ModelShadow{}, fmt.Errorf("shadow model: %w", err)
	}
	sh.At = fromNanos(at)
	return sh, nil
}

// checkedShadow is rec, or a copy of it whose shadow is its error when the shadow's
// figures are out of range (a candidate's prediction gone wrong): a shadow never
// keeps a decision from being recorded.
func checkedShadow(rec *failure.Recommendation) *failure.Recommendation {
	sh := rec.Shadow
	if sh == nil {
		return rec
	}
	problem := ""
	check := func(field string, v, hi float64) {
		if problem == "" && (math.IsNaN(v) || v < 0 || v > hi) {
			problem = fmt.Sprintf("shadow.%s: %g, out of range", field, v)
		}
	}
	check("pSuccess", sh.PSuccess, 1)
	if o := sh.Option; o != nil {
		check("option.pSuccess", o.PSuccess, 1)
		check("option.pFix", o.PFix, 1)
		for _, f := range []struct {
			name string
			v    float64
		}{{"runtimeSeconds", o.RuntimeSeconds}, {"runCost", o.RunCost}, {"expectedCost", o.ExpectedCost},
			{"costMultiple", o.CostMultiple}, {"deadlineSeconds", o.DeadlineSeconds}, {"delaySeconds", o.DelaySeconds}} {
			check("option."+f.name, f.v, math.MaxFloat64)
		}
	}
	if problem == "" && sh.Version > 0 {
		return rec
	}
	if problem == "" {
		problem = fmt.Sprintf("shadow.version: %d, want a version", sh.Version)
	}
	out := *rec
	out.Shadow = &failure.Shadow{Version: sh.Version, Error: problem}
	return &out
}

// shadowRow is the shadow_predictions row of the decision rec (checked by
// checkedShadow) recorded as id at at; nil when rec has no shadow, or one of no
// version.
func shadowRow(id string, rec *failure.Recommendation, at time.Time) []any {
	sh := rec.Shadow
	if sh == nil || sh.Version <= 0 {
		return nil
	}
	var pActive, activeCost, candP, candCost float64
	chosen, retry := rec.ChosenOption()
	if retry {
		pActive, activeCost = chosen.PSuccess, chosen.ExpectedCost
	}
	if sh.Option != nil {
		candP, candCost = sh.Option.PSuccess, sh.Option.ExpectedCost
	}
	return []any{id, sh.Version, rec.ModelRegistryVersion, boolInt(retry), pActive, sh.PSuccess, activeCost,
		boolInt(sh.Retry), candP, candCost, boolInt(sh.Changed), clip(sh.Error, maxShadowError), nanos(at)}
}

// maxShadowError is the longest error a shadow prediction keeps, in bytes.
const maxShadowError = 1000

const shadowCols = "event_id, version, active_version, active_retry, p_active, p_candidate, active_cost, " +
	"candidate_retry, candidate_p, candidate_cost, changed, error, created_at"

// ShadowPrediction is a decision a shadowed version saw, with what became of it.
type ShadowPrediction struct {
	EventID   string
	Namespace string
	At        time.Time
	// ActiveRetry says whether the active version retried; PActive is its
	// P(success) of the option it chose, ActiveCost that option's expected cost.
	ActiveRetry bool
	PActive     float64
	ActiveCost  float64
	// PCandidate is the candidate's P(success) of the active's choice.
	PCandidate float64
	// CandidateRetry says whether the candidate would have retried; CandidateP and
	// CandidateCost are its P(success) and expected cost of its own choice.
	CandidateRetry bool
	CandidateP     float64
	CandidateCost  float64
	// Changed says the candidate's decision differed.
	Changed bool
	// Error is why the candidate decided nothing ("" when it decided).
	Error string
	// State is the remediation's state now.
	State State
	// Outcome is how the remediation's attempt ended: "" when there is none or it
	// has not ended, else Succeeded, Failed or Abandoned.
	Outcome State
	// Ran says the attempt ran the active's choice (false when there is no
	// attempt, or a reviewer picked another option or edited it: then neither
	// version's P(success) is of what ran).
	Ran bool
	// AttemptCost is what that attempt cost, as its outcome recorded it (0 when
	// none was recorded).
	AttemptCost float64
}

// ShadowFilter selects shadow predictions.
type ShadowFilter struct {
	// Version is the candidate, ActiveVersion the version that decided.
	Version, ActiveVersion int
	// Since and Until bound when the decisions were recorded: [Since, Until).
	Since, Until time.Time
	// Ended selects only the decisions that can be scored: the active version
	// retried, the candidate decided, and the attempt ended (succeeded or failed).
	Ended bool
	// Limit is the most read (the latest); 0: 100,000. MaxPerNamespace, when set, is
	// the most read of any one namespace (its latest), before Limit applies.
	Limit, MaxPerNamespace int
}

// EachShadowPrediction calls fn with the predictions f selects, the latest first.
func (s *Store) EachShadowPrediction(ctx context.Context, f ShadowFilter, fn func(*ShadowPrediction) error) error {
	limit := f.Limit
	if limit <= 0 {
		limit = 100_000
	}
	perNamespace := f.MaxPerNamespace
	if perNamespace <= 0 {
		perNamespace = limit
	}
	until := f.Until
	if until.IsZero() {
		until = time.Unix(0, math.MaxInt64)
	}
	args := []any{f.Version, f.ActiveVersion, nanos(f.Since), nanos(until)}
	ended := ""
	if f.Ended {
		ended = " AND s.active_retry = 1 AND s.error = '' AND a.outcome IN (?, ?)"
		args = append(args, string(Succeeded), string(Failed))
	}
	args = append(args, perNamespace, limit)
	// A window function caps each namespace before the overall limit: a namespace
	// that floods the window with failures does not crowd the others out.
	err := queryEach(ctx, s.r, s.q(`SELECT event_id, namespace, state, created_at, active_retry, p_active, active_cost,
		p_candidate, candidate_retry, candidate_p, candidate_cost, changed, error, outcome, edited, outcome_json
		FROM (SELECT s.event_id, e.namespace, e.state, s.created_at, s.active_retry, s.p_active, s.active_cost,
			s.p_candidate, s.candidate_retry, s.candidate_p, s.candidate_cost, s.changed, s.error,
			COALESCE(a.outcome, '') AS outcome, COALESCE(a.edited, -1) AS edited, COALESCE(o.outcome, '') AS outcome_json,
			ROW_NUMBER() OVER (PARTITION BY e.namespace ORDER BY s.created_at DESC, s.event_id) AS nth
			FROM shadow_predictions s JOIN events e ON e.event_id = s.event_id
			LEFT JOIN attempts a ON a.event_id = s.event_id
			LEFT JOIN outcomes o ON o.event_id = a.event_id AND o.attempt = a.number
			WHERE s.version = ? AND s.active_version = ? AND s.created_at >= ? AND s.created_at < ?`+ended+`) AS p
		WHERE nth <= ? ORDER BY created_at DESC, event_id LIMIT ?`),
		args, func(r *sql.Rows) error {
			var (
				p                                       ShadowPrediction
				at                                      int64
				activeRetry, candRetry, changed, edited int
				state, outcome, outJSON                 string
			)
			if err := r.Scan(&p.EventID, &p.Namespace, &state, &at, &activeRetry, &p.PActive, &p.ActiveCost, &p.PCandidate, &candRetry,
				&p.CandidateP, &p.CandidateCost, &changed, &p.Error, &outcome, &edited, &outJSON); err != nil {
				return err
			}
			p.At, p.ActiveRetry, p.CandidateRetry, p.Changed = fromNanos(at), activeRetry == 1, candRetry == 1, changed == 1
			p.State, p.Outcome = State(state), State(outcome)
			if o, ok := decodeOutcome(outJSON); ok && p.Outcome != "" {
				p.AttemptCost = o.Cost
			}
			// attempts.edited says whether the attempt ran the chosen option (0), as
			// the ledger decided when it was approved (-1: no attempt, or not yet
			// worked out).
			p.Ran = edited == 0
			return fn(&p)
		})
	if err != nil {
		return fmt.Errorf("shadow predictions: %w", err)
	}
	return nil
}

package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ModelAction is what a promotion did.
type ModelAction string

// The promotions' actions.
const (
	// ModelActivate made the first version registered active.
	ModelActivate ModelAction = "activate"
	// ModelPromote made a version active whose gates passed.
	ModelPromote ModelAction = "promote"
	// ModelForce made a version active past gates that failed: an admin's decision,
	// with a reason.
	ModelForce ModelAction = "force"
	// ModelRollback made an earlier version active again, with a reason.
	ModelRollback ModelAction = "rollback"
)

// ModelPromotion is one change of the active version.
type ModelPromotion struct {
	// Seq numbers the promotions from 1.
	Seq int64
	// From is the version that was active (0: none), To the one made active.
	From, To int
	Action   ModelAction
	// Actor is who promoted, At when, Reason why (required to force or roll back).
	Actor  string
	Reason string
	At     time.Time
	// Gates are the figures the promotion was decided on (nil for ModelActivate).
	Gates *ModelGates
}

// ModelGates are the figures of a promotion's gates: the candidate and the active
// version scored on the same decisions.
type ModelGates struct {
	// Basis is which decisions were scored: GatesShadow, the live decisions the
	// candidate predicted in shadow, or GatesReplay, the recorded retries predicted
	// now ("" in promotions recorded before shadow evaluation: replay).
	Basis string `json:"basis,omitempty"`
	// Since and Until: the retries of the failures received in [Since, Until) were
	// scored.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Outcomes is how many retries both versions were scored on; MinOutcomes how
	// many the gate asks for.
	Outcomes    int `json:"outcomes"`
	MinOutcomes int `json:"minOutcomes"`
	// CalibrationMargin is how far the candidate's ECE may be above the active's.
	CalibrationMargin float64 `json:"calibrationMargin"`
	// Active and Candidate are the two versions' P(success) on those retries.
	Active    ModelMetrics `json:"active"`
	Candidate ModelMetrics `json:"candidate"`
	// Failed says which gates failed, one sentence each; empty when all passed.
	Failed []string `json:"failed"`
	// ShadowErrors is how many live decisions the candidate's prediction failed on
	// while evaluated in shadow (a gate fails when there are any).
	ShadowErrors int `json:"shadowErrors,omitempty"`
}

// The gates' bases.
const (
	GatesShadow = "shadow"
	GatesReplay = "replay"
)

// Passed reports whether every gate passed.
func (g *ModelGates) Passed() bool { return len(g.Failed) == 0 }

// MaxModelReason is the longest reason a promotion may carry, in bytes.
const MaxModelReason = 1000

// checkPromotion refuses a promotion that can never be recorded.
func checkPromotion(p *ModelPromotion) error {
	switch {
	case p.Action != ModelPromote && p.Action != ModelForce && p.Action != ModelRollback:
		return &ModelError{"action", fmt.Sprintf("%q, want promote, force or rollback", p.Action)}
	case p.To <= 0:
		return &ModelError{"to", fmt.Sprintf("%d, want a version", p.To)}
	case p.Actor == "":
		return &ModelError{"actor", "required"}
	case (p.Action == ModelForce || p.Action == ModelRollback) && strings.TrimSpace(p.Reason) == "":
		return &ModelError{"reason", fmt.Sprintf("required to %s: say why", p.Action)}
	case p.Gates == nil:
		return &ModelError{"gates", "required"}
	case p.Action == ModelPromote && !p.Gates.Passed():
		return &ModelError{"gates", "failed: a promotion past failed gates is forced"}
	}
	if err := checkText("actor", p.Actor, maxActor, false); err != nil {
		return err
	}
	return checkText("reason", p.Reason, MaxModelReason, true)
}

// PromoteModel makes p.To the active version, at p.At (now when zero), if p.From is
// still the active one, and records the promotion with an audit row (event id "",
// action "model-" and p's action). It returns the promotion as recorded. A
// promotion that can never be recorded is a *ModelError naming the field (forcing
// and rolling back need a reason; a plain promotion needs gates that passed); a
// version the registry does not hold is ErrNotFound; an active version other than
// p.From (someone promoted meanwhile), or p.To already active, is ErrConflict.
func (s *Store) PromoteModel(ctx context.Context, p ModelPromotion) (ModelPromotion, error) {
	if err := checkPromotion(&p); err != nil {
		return ModelPromotion{}, err
	}
	p.At = atOrNow(p.At).UTC()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockModels(ctx, tx); err != nil {
			return err
		}
		active, err := activeModel(ctx, tx)
		if err != nil {
			return err
		}
		switch {
		case active == p.To:
			return fmt.Errorf("model version %d is already active: %w", p.To, ErrConflict)
		case active != p.From:
			return fmt.Errorf("the active model version is %d, not %d (promoted meanwhile): %w", active, p.From, ErrConflict)
		}
		if _, err := s.modelVersion(ctx, tx, p.To, false); err != nil {
			return err
		}
		if err := s.insertPromotion(ctx, tx, &p); err != nil {
			return err
		}
		return s.endShadowOf(ctx, tx, &p)
	})
	if err != nil {
		return ModelPromotion{}, err
	}
	return p, nil
}

// insertPromotion records p (its Seq set) and its audit row; the caller holds the
// registry's lock.
func (s *Store) insertPromotion(ctx context.Context, tx *sql.Tx, p *ModelPromotion) error {
	gates := ""
	if p.Gates != nil {
		data, err := json.Marshal(p.Gates)
		if err != nil {
			return fmt.Errorf("promote model: %w", err)
		}
		gates = string(data)
	}
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) + 1 FROM model_promotions").Scan(&p.Seq); err != nil {
		return fmt.Errorf("promote model: %w", err)
	}
	_, err := tx.ExecContext(ctx, s.q("INSERT INTO model_promotions ("+promotionCols+") VALUES "+placeholders(1, 8)),
		p.Seq, p.From, p.To, string(p.Action), p.Actor, p.Reason, gates, nanos(p.At))
	if err != nil {
		return fmt.Errorf("promote model: %w", err)
	}
	return s.addAudit(ctx, tx, "", p.At, p.Actor, "model-"+string(p.Action), "", "", promotionDetail(p))
}

// promotionDetail is the audit trail's line of a promotion.
func promotionDetail(p *ModelPromotion) string {
	var b strings.Builder
	fmt.Fprintf(&b, "model version %d -> %d", p.From, p.To)
	if g := p.Gates; g != nil {
		fmt.Fprintf(&b, "; on %d outcomes, log-loss %.4f -> %.4f, ECE %.4f -> %.4f", g.Outcomes,
			g.Active.LogLoss, g.Candidate.LogLoss, g.Active.ECE, g.Candidate.ECE)
		if g.Passed() {
			b.WriteString(", gates passed")
		} else {
			b.WriteString(", gates failed: " + strings.Join(g.Failed, "; "))
		}
	}
	if p.Reason != "" {
		b.WriteString("; reason: " + p.Reason)
	}
	return b.String()
}

const promotionCols = "seq, from_version, to_version, action, actor, reason, gates, created_at"

// activeModel is the active version: the latest promotion's; 0 when there is none.
func activeModel(ctx context.Context, db querier) (int, error) {
	var v int
	err := db.QueryRowContext(ctx, "SELECT to_version FROM model_promotions ORDER BY seq DESC LIMIT 1").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("active model: %w", err)
	}
	return v, nil
}

// ActiveModel returns the active version of the registry: 0 when it is empty.
// Replicas poll it: it reads one row.
func (s *Store) ActiveModel(ctx context.Context) (int, error) { return activeModel(ctx, s.r) }

// ModelPromotions returns the latest limit promotions (at most 1000), newest first.
func (s *Store) ModelPromotions(ctx context.Context, limit int) ([]ModelPromotion, error) {
	limit = min(max(limit, 1), 1000)
	var out []ModelPromotion
	err := queryEach(ctx, s.r, s.q("SELECT "+promotionCols+" FROM model_promotions ORDER BY seq DESC LIMIT ?"), []any{limit},
		func(r *sql.Rows) error {
			var (
				p             ModelPromotion
				action, gates string
				at            int64
			)
			if err := r.Scan(&p.Seq, &p.From, &p.To, &action, &p.Actor, &p.Reason, &gates, &at); err != nil {
				return err
			}
			p.Action, p.At = ModelAction(action), fromNanos(at)
			if gates != "" {
				p.Gates = new(ModelGates)
				if err := json.Unmarshal([]byte(gates), p.Gates); err != nil {
					return fmt.Errorf("promotion %d: gates: %w", p.Seq, err)
				}
			}
			out = append(out, p)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("model promotions: %w", err)
	}
	return out, nil
}

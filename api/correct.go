package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// Corrections: an approver says what a failure really was (its category and whether
// a retry can fix it). The ledger keeps each with who and when; the latest is the one
// in force, and labels the remediation's event for training (autofix ledger
// corrections). A correction changes neither the remediation's state nor the
// classification autofix recorded.

// CorrectRequest corrects a remediation's classification.
type CorrectRequest struct {
	// Category is one of the taxonomy's (required).
	Category string `json:"category"`
	// Retryable says whether a retry (with more resources, or after a wait) can fix
	// the failure (required).
	Retryable *bool `json:"retryable"`
	// Note says why (optional, at most ledger.MaxCorrectionNote bytes).
	Note string `json:"note,omitempty"`
}

// CorrectionView is a correction of a remediation's classification.
type CorrectionView struct {
	Category  failure.Category `json:"category"`
	Retryable bool             `json:"retryable"`
	By        string           `json:"by"`
	At        time.Time        `json:"at"`
	Note      string           `json:"note,omitempty"`
}

func correctionView(c *ledger.Correction) *CorrectionView {
	if c == nil {
		return nil
	}
	return &CorrectionView{Category: c.Category, Retryable: c.Retryable, By: c.Actor, At: c.At.UTC(), Note: c.Note}
}

// correct is POST /v1/remediations/{id}:correct.
func (s *Server) correct(c *echo.Context) error {
	var req CorrectRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Category == "" {
		return badRequest("category", "required: one of the taxonomy's categories")
	}
	if req.Retryable == nil {
		return badRequest("retryable", "required: whether a retry can fix the failure")
	}
	p, _ := principal(c)
	id, err := remediationID(c)
	if err != nil {
		return err
	}
	corr, err := s.correctFor(c.Request().Context(), id, p, failure.Category(req.Category), *req.Retryable, req.Note)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, correctionView(&corr))
}

// correctFor records p's correction of remediation id, and counts and logs it: the
// JSON API and the review page both come here.
func (s *Server) correctFor(ctx context.Context, id string, p auth.Principal, category failure.Category, retryable bool,
	note string) (ledger.Correction, error) {
	corr := ledger.Correction{Category: category, Retryable: retryable, Actor: p.Name, At: s.o.Now().UTC(), Note: note}
	if err := s.o.Ledger.Correct(ctx, id, category, retryable, p.Name, note, corr.At); err != nil {
		return ledger.Correction{}, err
	}
	s.o.Metrics.reviewed("correct")
	s.log.Info("remediation corrected", "id", id, "by", p.Name, "category", category, "retryable", retryable)
	return corr, nil
}

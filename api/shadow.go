package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/registry"
)

// Shadow evaluation of a registered version (docs/models.md): admins start and stop
// it; viewers read how the candidate scores next to the active version.

// ShadowView is which version is evaluated in shadow.
type ShadowView struct {
	// Version is the version every replica evaluates in shadow (once it has
	// polled); 0: none.
	Version int `json:"version"`
	// InUse is the version this replica evaluates (0: none).
	InUse int `json:"inUse"`
	// By, Reason and At are the latest change's (absent when there was none).
	By     string     `json:"by,omitempty"`
	Reason string     `json:"reason,omitempty"`
	At     *time.Time `json:"at,omitempty"`
}

// ShadowRequest asks for a shadow evaluation to start or stop.
type ShadowRequest struct {
	// Reason says why (optional; at most ledger.MaxModelReason bytes).
	Reason string `json:"reason"`
}

// ShadowReportView is a candidate scored in shadow against the active version.
type ShadowReportView struct {
	Version       int       `json:"version"`
	ActiveVersion int       `json:"activeVersion"`
	Since         time.Time `json:"since"`
	Until         time.Time `json:"until"`
	// Decisions the candidate saw, Errors those it decided nothing of, Pending the
	// active's retries that may still run, Edited those that ended having run another
	// configuration than the one chosen (not scored).
	Decisions int `json:"decisions"`
	Errors    int `json:"errors"`
	Pending   int `json:"pending"`
	Edited    int `json:"edited"`
	// Active and Candidate are the two versions' P(success) of the active's
	// choices, scored against how those attempts ended.
	Active    ledger.ModelMetrics `json:"active"`
	Candidate ledger.ModelMetrics `json:"candidate"`
	Changes   ShadowChangesView   `json:"changes"`
}

// ShadowChangesView are the decisions the candidate would have changed.
type ShadowChangesView struct {
	Total                  int     `json:"total"`
	Retry                  int     `json:"retry"`
	RetryExpectedCost      float64 `json:"retryExpectedCost"`
	NoRetry                int     `json:"noRetry"`
	LostFixes              int     `json:"lostFixes"`
	SavedSpend             float64 `json:"savedSpend"`
	Configuration          int     `json:"configuration"`
	ConfigurationEnded     int     `json:"configurationEnded"`
	ConfigurationSucceeded int     `json:"configurationSucceeded"`
	ActiveExpectedCost     float64 `json:"activeExpectedCost"`
	CandidateExpectedCost  float64 `json:"candidateExpectedCost"`
}

// NewShadowReportView is r as the API shows it.
func NewShadowReportView(r *registry.ShadowReport) ShadowReportView {
	c := r.Changes
	return ShadowReportView{Version: r.Version, ActiveVersion: r.ActiveVersion, Since: r.Since.UTC(), Until: r.Until.UTC(),
		Decisions: r.Decisions, Errors: r.Errors, Pending: r.Pending, Edited: r.Edited, Active: r.Active, Candidate: r.Candidate,
		Changes: ShadowChangesView{Total: c.Total, Retry: c.Retry, RetryExpectedCost: c.RetryExpectedCost, NoRetry: c.NoRetry,
			LostFixes: c.LostFixes, SavedSpend: c.SavedSpend, Configuration: c.Configuration, ConfigurationEnded: c.Ended,
			ConfigurationSucceeded: c.Succeeded, ActiveExpectedCost: c.ActiveExpectedCost, CandidateExpectedCost: c.CandidateExpectedCost}}
}

// shadowView is the shadow state st as this replica sees it.
func shadowView(st ledger.ModelShadow, inUse int) ShadowView {
	out := ShadowView{Version: st.Version, InUse: inUse, By: st.Actor, Reason: st.Reason}
	if st.Seq > 0 {
		at := st.At.UTC()
		out.At = &at
	}
	return out
}

// getShadowReport is GET /v1/models/{version}/shadow.
func (s *Server) getShadowReport(c *echo.Context) error {
	reg, err := s.modelRegistry()
	if err != nil {
		return err
	}
	version, err := modelVersion(c)
	if err != nil {
		return err
	}
	rep, err := reg.ShadowReport(c.Request().Context(), version)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NewShadowReportView(&rep))
}

// startShadow is POST /v1/models/{version}:shadow.
func (s *Server) startShadow(c *echo.Context) error {
	var req ShadowRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	version, err := modelVersion(c)
	if err != nil {
		return err
	}
	p, _ := principal(c)
	st, err := s.changeShadow(c.Request().Context(), version, p, req.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// stopShadow is POST /v1/models:stopShadow.
func (s *Server) stopShadow(c *echo.Context) error {
	var req ShadowRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	p, _ := principal(c)
	st, err := s.changeShadow(c.Request().Context(), 0, p, req.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// changeShadow starts the shadow evaluation of version (0: stops it) as p, and logs
// it: the JSON API and the review page both come here.
func (s *Server) changeShadow(ctx context.Context, version int, p auth.Principal, reason string) (ShadowView, error) {
	reg, err := s.modelRegistry()
	if err != nil {
		return ShadowView{}, err
	}
	change := registry.ShadowChange{Actor: p.Name, Reason: reason}
	var st ledger.ModelShadow
	if version == 0 {
		st, err = reg.StopShadow(ctx, change)
	} else {
		st, err = reg.StartShadow(ctx, version, change)
	}
	if err != nil {
		return ShadowView{}, err
	}
	s.log.Info("the model version evaluated in shadow changed", "version", st.Version, "by", p.Name)
	return shadowView(st, reg.Shadowed().Version), nil
}

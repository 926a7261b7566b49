package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/registry"
)

// The model registry: the versions of the retry models, which one is active, and its
// promotions (docs/models.md). Viewers read them; admins promote a version behind
// the gates, force one past them with a reason, or roll back to an earlier one. The
// review page's forms come through the same paths (changeActive).

// ModelRegistry is the registry of the retry models: *registry.Registry.
type ModelRegistry interface {
	List(ctx context.Context, limit int) ([]ledger.ModelVersion, int, error)
	Get(ctx context.Context, version int) (ledger.ModelVersion, error)
	Promotions(ctx context.Context, limit int) ([]ledger.ModelPromotion, error)
	Promote(ctx context.Context, version int, p registry.Promotion) (ledger.ModelPromotion, registry.Evaluation, error)
	Rollback(ctx context.Context, version int, p registry.Promotion) (ledger.ModelPromotion, registry.Evaluation, error)
	// InUse are the models this replica runs.
	InUse() registry.InUse
	StartShadow(ctx context.Context, version int, c registry.ShadowChange) (ledger.ModelShadow, error)
	StopShadow(ctx context.Context, c registry.ShadowChange) (ledger.ModelShadow, error)
	ShadowState(ctx context.Context) (ledger.ModelShadow, error)
	ShadowReport(ctx context.Context, version int) (registry.ShadowReport, error)
	// Shadowed is the version this replica evaluates in shadow.
	Shadowed() registry.InUse
}

// Listing sizes.
const (
	// modelVersionsShown is how many of the latest versions GET /v1/models lists
	// by default; promotionsShown how many of the latest promotions.
	modelVersionsShown = 100
	promotionsShown    = 20
)

// ModelList is the registry: its latest versions, newest first, the active one, the
// one this replica runs and the latest promotions.
type ModelList struct {
	Models []ModelVersionView `json:"models"`
	// Active is the active version; 0 without a registry.
	Active     int                  `json:"active"`
	InUse      InUseView            `json:"inUse"`
	Promotions []ModelPromotionView `json:"promotions"`
	// Shadow is the version evaluated in shadow.
	Shadow ShadowView `json:"shadow"`
}

// InUseView is the models a replica runs.
type InUseView struct {
	// Version is the registry's; 0: models not from it.
	Version int    `json:"version"`
	Name    string `json:"name"`
}

// ModelVersionView is a registered version of the retry models.
type ModelVersionView struct {
	Version int    `json:"version"`
	Parent  int    `json:"parent"`
	Name    string `json:"name"`
	// Source is what it was trained on: simulator, ledger or mixed; DataFrom and
	// DataTo when the ledger's failures it was trained on were received.
	Source   ledger.ModelSource `json:"source"`
	DataFrom *time.Time         `json:"dataFrom,omitempty"`
	DataTo   *time.Time         `json:"dataTo,omitempty"`
	// CodeVersion is the VCS revision of the autofix that registered it.
	CodeVersion string `json:"codeVersion"`
	// Metrics are its P(success) on the retries held out from its training; absent
	// when its artifact has no evaluation.
	Metrics      *ledger.ModelMetrics `json:"metrics,omitempty"`
	Note         string               `json:"note,omitempty"`
	RegisteredBy string               `json:"registeredBy"`
	RegisteredAt time.Time            `json:"registeredAt"`
	Size         int                  `json:"size"`
	SHA256       string               `json:"sha256"`
	// Active: every replica runs it (once it has polled); InUse: this one does.
	Active bool `json:"active"`
	InUse  bool `json:"inUse"`
	// Content is the artifact (GET /v1/models/{version} only).
	Content json.RawMessage `json:"content,omitempty"`
}

// ModelPromotionView is a change of the active version.
type ModelPromotionView struct {
	Seq    int64              `json:"seq"`
	From   int                `json:"from"`
	To     int                `json:"to"`
	Action ledger.ModelAction `json:"action"`
	By     string             `json:"by"`
	Reason string             `json:"reason,omitempty"`
	At     time.Time          `json:"at"`
	// Gates are the figures it was decided on (absent for the first activation).
	Gates *ledger.ModelGates `json:"gates,omitempty"`
}

// PromoteRequest asks for a version to be made active.
type PromoteRequest struct {
	// Force promotes past failed gates; it needs a reason.
	Force bool `json:"force"`
	// Reason says why (required to force; at most ledger.MaxModelReason bytes).
	Reason string `json:"reason"`
}

// RollbackRequest asks for an earlier version to be made active again.
type RollbackRequest struct {
	// Reason says why (required).
	Reason string `json:"reason"`
}

// NewModelVersionView is version v as the API shows it, given the active version and
// the one this replica runs (0: not known).
func NewModelVersionView(v *ledger.ModelVersion, active, inUse int) ModelVersionView {
	out := ModelVersionView{Version: v.Version, Parent: v.Parent, Name: v.Name, Source: v.Source, CodeVersion: v.CodeVersion,
		Note: v.Note, RegisteredBy: v.RegisteredBy, RegisteredAt: v.RegisteredAt.UTC(), Size: v.Size, SHA256: v.SHA256,
		Active: v.Version == active, InUse: v.Version == inUse}
	if !v.DataFrom.IsZero() {
		t := v.DataFrom.UTC()
		out.DataFrom = &t
	}
	if !v.DataTo.IsZero() {
		t := v.DataTo.UTC()
		out.DataTo = &t
	}
	if v.Metrics.N > 0 {
		m := v.Metrics
		out.Metrics = &m
	}
	if json.Valid(v.Content) {
		out.Content = v.Content
	}
	return out
}

func promView(p *ledger.ModelPromotion) ModelPromotionView {
	return ModelPromotionView{Seq: p.Seq, From: p.From, To: p.To, Action: p.Action, By: p.Actor, Reason: p.Reason, At: p.At.UTC(), Gates: p.Gates}
}

func (s *Server) modelRegistry() (ModelRegistry, error) {
	if s.o.ModelRegistry == nil {
		return nil, apiErr(http.StatusServiceUnavailable, "", "this server has no model registry")
	}
	return s.o.ModelRegistry, nil
}

// modelList reads the registry for GET /v1/models and the review page.
func (s *Server) modelList(ctx context.Context, limit int) (ModelList, error) {
	out := ModelList{Models: []ModelVersionView{}, Promotions: []ModelPromotionView{}, InUse: InUseView{Name: s.o.Models.Name}}
	if s.o.ModelRegistry == nil {
		return out, nil
	}
	reg := s.o.ModelRegistry
	in := reg.InUse()
	out.InUse = InUseView{Version: in.Version, Name: in.Models.Name}
	list, active, err := reg.List(ctx, limit)
	if err != nil {
		return out, err
	}
	out.Active = active
	for i := range list {
		out.Models = append(out.Models, NewModelVersionView(&list[i], active, in.Version))
	}
	proms, err := reg.Promotions(ctx, promotionsShown)
	if err != nil {
		return out, err
	}
	for i := range proms {
		out.Promotions = append(out.Promotions, promView(&proms[i]))
	}
	st, err := reg.ShadowState(ctx)
	if err != nil {
		return out, err
	}
	out.Shadow = shadowView(st, reg.Shadowed().Version)
	return out, nil
}

// listModels is GET /v1/models.
func (s *Server) listModels(c *echo.Context) error {
	limit := modelVersionsShown
	if q := c.QueryParam("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 1000 {
			return badRequest("limit", "%q: want 1 to 1000", q)
		}
		limit = n
	}
	out, err := s.modelList(c.Request().Context(), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// modelVersion is the path's version: a positive integer.
func modelVersion(c *echo.Context) (int, error) {
	v, err := strconv.Atoi(c.Param("version"))
	if err != nil || v < 1 || v > 1<<31-1 {
		return 0, badRequest("version", "%q: want a version number (1, 2, ...)", c.Param("version"))
	}
	return v, nil
}

// getModel is GET /v1/models/{version}: the version with its artifact.
func (s *Server) getModel(c *echo.Context) error {
	reg, err := s.modelRegistry()
	if err != nil {
		return err
	}
	version, err := modelVersion(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	v, err := reg.Get(ctx, version)
	if err != nil {
		return err
	}
	_, active, err := reg.List(ctx, 1)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NewModelVersionView(&v, active, reg.InUse().Version))
}

// changeModel is POST /v1/models/{version}:promote, or :rollback when rollback is
// set (its request has no force).
func (s *Server) changeModel(rollback bool) echo.HandlerFunc {
	return func(c *echo.Context) error {
		var (
			req  PromoteRequest
			back RollbackRequest
			body any = &req
		)
		if rollback {
			body = &back
		}
		if err := decodeJSON(c, body); err != nil {
			return err
		}
		if rollback {
			req.Reason = back.Reason
		}
		version, err := modelVersion(c)
		if err != nil {
			return err
		}
		p, _ := principal(c)
		rec, err := s.changeActive(c.Request().Context(), version, p, rollback, req.Force, req.Reason)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, promView(&rec))
	}
}

// changeActive promotes version as p, or rolls back to it, and logs it: the JSON API
// and the review page both come here.
func (s *Server) changeActive(ctx context.Context, version int, p auth.Principal, rollback, force bool, reason string) (ledger.ModelPromotion, error) {
	reg, err := s.modelRegistry()
	if err != nil {
		return ledger.ModelPromotion{}, err
	}
	change := reg.Promote
	if rollback {
		change = reg.Rollback
	}
	rec, _, err := change(ctx, version, registry.Promotion{Actor: p.Name, Force: force, Reason: strings.TrimSpace(reason)})
	if err != nil {
		return rec, err
	}
	s.log.Info("the active model version changed", "from", rec.From, "to", rec.To, "action", rec.Action, "by", p.Name)
	return rec, nil
}

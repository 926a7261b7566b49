package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/autonomy"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// Graduated autonomy: every kind of fix (a category on one job template, for one
// kind of job) with how
// people decided its fixes and how they worked; the ones that pass the thresholds
// are proposed, and an admin grants or revokes autonomy (docs/service.md). The
// review page's forms come through the same paths (changeAutonomy).

// Autonomy proposes, grants and revokes autonomy: *autonomy.Service.
type Autonomy interface {
	List(ctx context.Context) (autonomy.Listing, error)
	Grant(ctx context.Context, k ledger.Kind, actor, reason string, force bool) (ledger.AutonomyChange, error)
	Revoke(ctx context.Context, k ledger.Kind, actor, reason string) (ledger.AutonomyChange, error)
	Thresholds() policy.Autonomy
}

// AutonomyList is every kind of fix with its figures over the window, the
// thresholds, and the latest grants and revocations.
type AutonomyList struct {
	// Enabled is policy.autonomy.enabled: off, nothing is proposed or honoured.
	Enabled    bool               `json:"enabled"`
	Thresholds AutonomyThresholds `json:"thresholds"`
	// Since and Until bound the window: failures received in it are counted.
	Since time.Time          `json:"since"`
	Until time.Time          `json:"until"`
	Kinds []AutonomyKindView `json:"kinds"`
	// Changes are the latest 20 grants and revocations, newest first.
	Changes []AutonomyChangeView `json:"changes"`
}

// AutonomyThresholds are policy.autonomy's thresholds.
type AutonomyThresholds struct {
	WindowHours     float64 `json:"windowHours"`
	MinReviews      int     `json:"minReviews"`
	MinApprovalRate float64 `json:"minApprovalRate"`
	MinOutcomes     int     `json:"minOutcomes"`
	MinSuccessRate  float64 `json:"minSuccessRate"`
	MinConfidence   float64 `json:"minConfidence"`
	RevertWindow    int     `json:"revertWindow"`
	RevertBelow     float64 `json:"revertBelow"`
}

// AutonomyKindView is a kind of fix with its figures.
type AutonomyKindView struct {
	Category failure.Category `json:"category"`
	Template string           `json:"template"`
	// JobKind is the kind of job: the same template key of another kind (a
	// Deployment named as a batch Job's template) is another kind of fix. Absent
	// for jobs that carry no kind: such a kind is never proposed nor granted.
	JobKind failure.JobKind `json:"jobKind,omitempty"`
	// Workload is the workload's API kind (Job, JobSet, RayJob, Workflow): a JobSet
	// of a batch Job's template is another kind of fix.
	Workload string `json:"workload"`
	// Approved, Edited and Rejected count its fixes people decided: approved as
	// recommended, approved only after changing the configuration (not an
	// approval of the recommendation), rejected. ApprovalRate is the share of
	// them approved as recommended (absent with none).
	Approved     int      `json:"approved"`
	Edited       int      `json:"edited"`
	Rejected     int      `json:"rejected"`
	ApprovalRate *float64 `json:"approvalRate,omitempty"`
	// Reviewed and Automatic are how its attempts that ran the recommendation
	// ended, approved by a person or not (edited ones are in neither); SuccessRate
	// is the share of all of them that succeeded (absent with none).
	Reviewed    ledger.AttemptCounts `json:"reviewed"`
	Automatic   ledger.AttemptCounts `json:"automatic"`
	SuccessRate *float64             `json:"successRate,omitempty"`
	// Passes: it meets every threshold; Unmet says which it does not.
	Passes bool     `json:"passes"`
	Unmet  []string `json:"unmet"`
	// Grant is the grant in force (absent: none).
	Grant *AutonomyChangeView `json:"grant,omitempty"`
	// Proposed: it passes and is not granted; an admin may grant it.
	Proposed bool `json:"proposed"`
}

// AutonomyChangeView is a grant or a revocation.
type AutonomyChangeView struct {
	Seq      int64                 `json:"seq"`
	Category failure.Category      `json:"category"`
	Template string                `json:"template"`
	JobKind  failure.JobKind       `json:"jobKind"`
	Workload string                `json:"workload"`
	Action   ledger.AutonomyAction `json:"action"`
	// Forced: granted past thresholds it did not meet.
	Forced bool `json:"forced"`
	// Grant is, for a revocation, the seq of the grant it ended.
	Grant  int64     `json:"grant,omitempty"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
	// Evidence are the figures it was decided on.
	Evidence *ledger.AutonomyEvidence `json:"evidence,omitempty"`
}

// AutonomyGrantRequest asks for a kind of fix to apply on its own.
type AutonomyGrantRequest struct {
	Category string `json:"category"`
	// Template is "namespace/template".
	Template string `json:"template"`
	// JobKind is the kind of job: training, compression, deployment or batch.
	JobKind string `json:"jobKind"`
	// Workload is the workload's API kind: Job (the default), JobSet, RayJob or
	// Workflow.
	Workload string `json:"workload"`
	// Reason says why (required to force; at most ledger.MaxAutonomyReason bytes).
	Reason string `json:"reason"`
	// Force grants a kind that does not pass the thresholds; it is recorded.
	Force bool `json:"force"`
}

// AutonomyRevokeRequest sends a kind of fix back to review.
type AutonomyRevokeRequest struct {
	Category string `json:"category"`
	Template string `json:"template"`
	JobKind  string `json:"jobKind"`
	Workload string `json:"workload"`
	// Reason says why (required).
	Reason string `json:"reason"`
}

func changeView(c *ledger.AutonomyChange) AutonomyChangeView {
	return AutonomyChangeView{Seq: c.Seq, Category: c.Kind.Category, Template: c.Kind.Template, JobKind: c.Kind.JobKind,
		Workload: workloadName(c.Kind.Workload), Action: c.Action, Forced: c.Forced, Grant: c.Grant, By: c.Actor, Reason: c.Reason, At: c.At.UTC(), Evidence: c.Evidence}
}

// kindOf is the kind of fix a request names, its fields trimmed; no workload, or
// Job, is a batch Job's.
func kindOf(category, template, jobKind, workload string) ledger.Kind {
	k := ledger.Kind{Category: failure.Category(strings.TrimSpace(category)), Template: strings.TrimSpace(template),
		JobKind: failure.JobKind(strings.TrimSpace(jobKind)), Workload: strings.TrimSpace(workload)}
	if k.Workload == ledger.WorkloadJob {
		k.Workload = ""
	}
	return k
}

// workloadName is the workload a kind names as the API shows it: Job for "".
func workloadName(w string) string {
	if w == "" {
		return ledger.WorkloadJob
	}
	return w
}

func rate(n, of int) *float64 {
	if of == 0 {
		return nil
	}
	r := float64(n) / float64(of)
	return &r
}

// NewAutonomyList is l as the API shows it, under thresholds th.
func NewAutonomyList(l *autonomy.Listing, th policy.Autonomy) AutonomyList {
	out := AutonomyList{Enabled: th.Enabled, Since: l.Since.UTC(), Until: l.Until.UTC(), Kinds: []AutonomyKindView{},
		Changes: []AutonomyChangeView{}, Thresholds: AutonomyThresholds{WindowHours: th.Window.Hours(), MinReviews: th.MinReviews,
			MinApprovalRate: th.MinApprovalRate, MinOutcomes: th.MinOutcomes, MinSuccessRate: th.MinSuccessRate,
			MinConfidence: th.MinConfidence, RevertWindow: th.RevertWindow, RevertBelow: th.RevertBelow}}
	for i := range l.Kinds {
		a := &l.Kinds[i]
		o := a.Outcomes()
		v := AutonomyKindView{Category: a.Kind.Category, Template: a.Kind.Template, JobKind: a.Kind.JobKind,
			Workload: workloadName(a.Kind.Workload), Approved: a.Approved,
			Edited: a.Edited, Rejected: a.Rejected, ApprovalRate: rate(a.Approved, a.Reviews()), Reviewed: a.Reviewed, Automatic: a.Automatic,
			SuccessRate: rate(o.Succeeded, o.Total()), Passes: a.Passes, Unmet: append([]string{}, a.Unmet...), Proposed: a.Proposed}
		if a.Grant != nil {
			g := changeView(a.Grant)
			v.Grant = &g
		}
		out.Kinds = append(out.Kinds, v)
	}
	for i := range l.Changes {
		out.Changes = append(out.Changes, changeView(&l.Changes[i]))
	}
	return out
}

func (s *Server) autonomy() (Autonomy, error) {
	if s.o.Autonomy == nil {
		return nil, apiErr(http.StatusServiceUnavailable, "", "this server does not grant autonomy")
	}
	return s.o.Autonomy, nil
}

// autonomyList reads every kind for GET /v1/autonomy and the review page.
func (s *Server) autonomyList(ctx context.Context) (AutonomyList, error) {
	a, err := s.autonomy()
	if err != nil {
		return AutonomyList{}, err
	}
	l, err := a.List(ctx)
	if err != nil {
		return AutonomyList{}, err
	}
	return NewAutonomyList(&l, a.Thresholds()), nil
}

// listAutonomy is GET /v1/autonomy.
func (s *Server) listAutonomy(c *echo.Context) error {
	out, err := s.autonomyList(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// grantAutonomy is POST /v1/autonomy:grant.
func (s *Server) grantAutonomy(c *echo.Context) error {
	var req AutonomyGrantRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	p, _ := principal(c)
	rec, err := s.changeAutonomy(c.Request().Context(), p, ledger.AutonomyGrant, kindOf(req.Category, req.Template, req.JobKind, req.Workload),
		req.Reason, req.Force)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, changeView(&rec))
}

// revokeAutonomy is POST /v1/autonomy:revoke.
func (s *Server) revokeAutonomy(c *echo.Context) error {
	var req AutonomyRevokeRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	p, _ := principal(c)
	rec, err := s.changeAutonomy(c.Request().Context(), p, ledger.AutonomyRevoke, kindOf(req.Category, req.Template, req.JobKind, req.Workload),
		req.Reason, false)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, changeView(&rec))
}

// changeAutonomy grants or revokes autonomy as p: the JSON API and the review page
// both come here. Kinds that cannot be granted are a 400 naming category,
// template, jobKind or workload (ledger.CheckKind), a grant past thresholds the kind
// does not meet without force a 409, as is a grant of a granted kind or a revocation
// of one that is not.
func (s *Server) changeAutonomy(ctx context.Context, p auth.Principal, action ledger.AutonomyAction, k ledger.Kind,
	reason string, force bool) (ledger.AutonomyChange, error) {
	a, err := s.autonomy()
	if err != nil {
		return ledger.AutonomyChange{}, err
	}
	if err := ledger.CheckKind(k); err != nil {
		return ledger.AutonomyChange{}, err
	}
	if len(reason) > ledger.MaxAutonomyReason {
		return ledger.AutonomyChange{}, badRequest("reason", "at most %d bytes", ledger.MaxAutonomyReason)
	}
	if action == ledger.AutonomyRevoke {
		return a.Revoke(ctx, k, p.Name, reason)
	}
	return a.Grant(ctx, k, p.Name, reason, force)
}

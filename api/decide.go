package api

import (
	"context"
	"strconv"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/review"
)

// ApproveRequest approves a fix kept for review: the recommendation's chosen option,
// another option of its Pareto front, and resources or params edited within the
// policy's caps.
type ApproveRequest struct {
	Reason string `json:"reason"`
	// Option indexes the recommendation's options (default: the chosen one).
	Option *int `json:"option,omitempty"`
	// Resources and Params replace the option's (only the fields given).
	Resources *failure.Resources `json:"resources,omitempty"`
	Params    map[string]string  `json:"params,omitempty"`
}

// RejectRequest rejects a fix kept for review; the reason is required.
type RejectRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) approve(c *echo.Context) error {
	var req ApproveRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	choice := review.Choice{Reason: req.Reason, Option: req.Option, Resources: req.Resources, Params: req.Params}
	return s.decide(c, func(ctx context.Context, id string, p auth.Principal) error { return s.approveFor(ctx, id, p, choice) })
}

func (s *Server) reject(c *echo.Context) error {
	var req RejectRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	return s.decide(c, func(ctx context.Context, id string, p auth.Principal) error {
		return s.rejectFor(ctx, id, p, req.Reason)
	})
}

// decide makes a review decision on the remediation of the path, for the caller, and
// answers with the remediation as it now stands.
func (s *Server) decide(c *echo.Context, do func(ctx context.Context, id string, p auth.Principal) error) error {
	p, _ := principal(c)
	id, err := remediationID(c)
	if err != nil {
		return err
	}
	if err := do(c.Request().Context(), id, p); err != nil {
		return err
	}
	return s.getRemediation(c)
}

// approveFor approves remediation id for p through the review service, and counts
// and logs it: the JSON API and the review page both come here.
func (s *Server) approveFor(ctx context.Context, id string, p auth.Principal, c review.Choice) error {
	a, err := s.o.Review.Approve(ctx, id, p.Name, c)
	if err != nil {
		return err
	}
	s.o.Metrics.reviewed("approve")
	s.log.Info("remediation approved", "id", id, "by", p.Name, "job", a.JobName)
	return nil
}

// rejectFor rejects remediation id for p through the review service, and counts and
// logs it.
func (s *Server) rejectFor(ctx context.Context, id string, p auth.Principal, reason string) error {
	if err := s.o.Review.Reject(ctx, id, p.Name, reason); err != nil {
		return err
	}
	s.o.Metrics.reviewed("reject")
	s.log.Info("remediation rejected", "id", id, "by", p.Name)
	return nil
}

// formChoice is the approval the review page's form asks for: a reason, and an
// option by its number.
func formChoice(c *echo.Context) (review.Choice, error) {
	choice := review.Choice{Reason: c.FormValue("reason")}
	if v := c.FormValue("option"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return choice, badRequest("option", "%q is not an option number", v)
		}
		choice.Option = &n
	}
	return choice, nil
}

package review

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// maxReason is the longest reason a decision may give, in bytes.
const maxReason = 1000

// Ledger is what a review reads and records.
type Ledger interface {
	Get(ctx context.Context, id string) (ledger.Remediation, error)
	ChainAttempts(ctx context.Context, chains []string) (map[string]int, error)
	Approve(ctx context.Context, id string, a ledger.Attempt, actor, detail string, at time.Time) error
	Reject(ctx context.Context, id, actor, detail string, at time.Time) error
}

// Options are what a Service decides with.
type Options struct {
	// Ledger holds the remediations. Required.
	Ledger Ledger
	// Policy caps what a reviewer may approve: the cost multiple and the chain's
	// attempts. Required.
	Policy *policy.Config
	// Catalogue prices resources (the cost cap on an edit) and names the GPU models.
	Catalogue failure.Catalogue
	// Largest is the largest node now, which an edit may not exceed (nil, or zero
	// fields: no limit). A function, so that it follows the cluster's nodes.
	Largest func() failure.Resources
	// Now is the clock of the audit trail (default time.Now).
	Now func() time.Time
}

// Service approves and rejects remediations kept for review. It is safe for
// concurrent use; two reviewers deciding one remediation at once get one decision
// recorded and a conflict (from the ledger) for the other.
type Service struct {
	o Options
}

// New returns a Service, or an error naming an Options field it needs.
func New(o Options) (*Service, error) {
	var errs []error
	if o.Ledger == nil {
		errs = append(errs, errors.New("review: Ledger: required"))
	}
	if o.Policy == nil {
		errs = append(errs, errors.New("review: Policy: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{o: o}, nil
}

// Choice is a reviewer's approval: the recommendation's chosen option unless Option
// says another, with Resources and Params (the fields given) replacing the option's.
type Choice struct {
	// Reason is the reviewer's note for the audit trail (optional; at most 1000
	// bytes).
	Reason string
	// Option indexes the recommendation's options: the chosen one, or another on
	// its Pareto front (nil: the chosen one).
	Option *int
	// Resources replaces the option's resources, the non-zero fields only.
	Resources *failure.Resources
	// Params sets tunables the job declares, each within what it declares.
	Params map[string]string
}

// FieldError is a decision refused for what it asked: Field names the part of the
// choice at fault ("option", "reason", "resources", "resources.memory",
// "resources.cpu", "resources.gpu", "resources.gpuType",
// "resources.ephemeralStorage", "params.<name>").
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// ConflictError is a decision the remediation cannot take as it stands: it is not
// pending review, it has nothing to act on, or its chain has used its attempts.
type ConflictError struct {
	ID      string
	Problem string
}

func (e *ConflictError) Error() string { return e.Problem }

// Approve approves remediation id for who, as c chooses: it checks the choice, then
// records the attempt to run (numbered with engine.NextAttempt, named with
// failure.AttemptName) and the audit row, and returns the attempt.
func (s *Service) Approve(ctx context.Context, id, who string, c Choice) (ledger.Attempt, error) {
	if len(c.Reason) > maxReason {
		return ledger.Attempt{}, fieldErr("reason", "at most 1000 characters")
	}
	r, err := s.o.Ledger.Get(ctx, id)
	if err != nil {
		return ledger.Attempt{}, err
	}
	if r.State != ledger.PendingReview {
		return ledger.Attempt{}, &ConflictError{r.EventID, fmt.Sprintf("remediation %s is %s: only a pending_review one can be approved", r.EventID, r.State)}
	}
	if r.Event == nil || r.Recommendation == nil {
		return ledger.Attempt{}, &ConflictError{r.EventID, fmt.Sprintf("remediation %s has no event to act on", r.EventID)}
	}
	ev := r.Event
	opt, picked, err := pick(r.Recommendation, ev, c)
	if err != nil {
		return ledger.Attempt{}, err
	}
	res, params := opt.Resources, maps.Clone(opt.Params)
	var edits []string
	if c.Resources != nil {
		if res, edits, err = s.edit(res, *c.Resources); err != nil {
			return ledger.Attempt{}, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Params)) {
		v := c.Params[k]
		tun, ok := ev.Job.Tunables[k]
		if !ok {
			return ledger.Attempt{}, fieldErr("params."+k, "not a tunable the job declares")
		}
		if err := checkTunable(tun, v); err != nil {
			return ledger.Attempt{}, fieldErr("params."+k, "%v", err)
		}
		if params == nil {
			params = map[string]string{}
		}
		params[k] = v
		edits = append(edits, k+"="+v)
	}
	if err := s.fitsLargest(res, c.Resources != nil, picked); err != nil {
		return ledger.Attempt{}, err
	}
	if c.Resources != nil {
		if err := s.withinLimits(res, ev); err != nil {
			return ledger.Attempt{}, err
		}
	}
	if err := s.withinCostCap(opt, res, ev, c.Resources != nil); err != nil {
		return ledger.Attempt{}, err
	}
	recorded, err := s.o.Ledger.ChainAttempts(ctx, []string{r.ChainID})
	if err != nil {
		return ledger.Attempt{}, err
	}
	runs, next := engine.NextAttempt(recorded[r.ChainID], ev.Job.Attempt)
	if limit := s.o.Policy.MaxAttemptsFor(ev); runs >= limit {
		return ledger.Attempt{}, &ConflictError{r.EventID, fmt.Sprintf("the chain has had %d runs, the policy's budget is %d", runs, limit)}
	}
	detail := "approved " + picked
	if len(edits) > 0 {
		detail += ", edited: " + strings.Join(edits, ", ")
	}
	if c.Reason != "" {
		detail += ": " + c.Reason
	}
	// The attempt runs with the whole option picked — its deadline, nodes to avoid,
	// delay and changes too — with the reviewer's edits.
	opt.Resources, opt.Params = res, params
	if len(edits) > 0 {
		opt.Changes = append(slices.Clone(opt.Changes), "edited by "+who+": "+strings.Join(edits, ", "))
	}
	original := failure.ChainOriginal(r.ChainID, ev.Job.Namespace, ev.Job.Name)
	a := ledger.Attempt{ChainID: r.ChainID, Number: next, EventID: r.EventID,
		JobName: failure.AttemptName(original, next), Resources: res, Params: params, Option: &opt}
	if err := s.o.Ledger.Approve(ctx, r.EventID, a, who, detail, s.o.Now()); err != nil {
		return ledger.Attempt{}, err
	}
	return a, nil
}

// pick is the option c approves, and how the audit trail names it.
func pick(rec *failure.Recommendation, ev *failure.Event, c Choice) (failure.Option, string, error) {
	switch {
	case c.Option != nil:
		i := *c.Option
		if i < 0 || i >= len(rec.Options) {
			return failure.Option{}, "", fieldErr("option", "%d: the recommendation has %d options", i, len(rec.Options))
		}
		if !rec.Options[i].Pareto && i != rec.Chosen {
			return failure.Option{}, "", fieldErr("option", "option %d is not on the Pareto front (another is both likelier to work and cheaper)", i)
		}
		return rec.Options[i], fmt.Sprintf("option %d", i), nil
	case rec.Chosen >= 0 && rec.Chosen < len(rec.Options):
		return rec.Options[rec.Chosen], fmt.Sprintf("the chosen option %d", rec.Chosen), nil
	case c.Resources == nil && len(c.Params) == 0:
		return failure.Option{}, "", fieldErr("option", "the recommendation has no option to approve: give resources or params")
	}
	return failure.Option{Resources: ev.Job.Resources, Params: ev.Job.Params, CostMultiple: 1}, "the failed run's configuration", nil
}

// Reject rejects remediation id for who, with the reason (required, at most 1000
// bytes) in the audit trail.
func (s *Service) Reject(ctx context.Context, id, who, reason string) error {
	switch reason = strings.TrimSpace(reason); {
	case reason == "":
		return fieldErr("reason", "required: say why, for whoever looks at this job next")
	case len(reason) > maxReason:
		return fieldErr("reason", "at most 1000 characters")
	}
	r, err := s.o.Ledger.Get(ctx, id)
	if err != nil {
		return err
	}
	if r.State != ledger.PendingReview {
		return &ConflictError{r.EventID, fmt.Sprintf("remediation %s is %s: only a pending_review one can be rejected", r.EventID, r.State)}
	}
	return s.o.Ledger.Reject(ctx, r.EventID, who, reason, s.o.Now())
}

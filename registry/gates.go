package registry

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
)

// Evaluation is a candidate version scored against the active one.
type Evaluation struct {
	// Active and Candidate are the two versions, without their content.
	Active, Candidate ledger.ModelVersion
	// Gates are the figures, and the gates that failed.
	Gates ledger.ModelGates
	// Stats count the ledger's retries read, and those left out.
	Stats ledger.RetryStats
}

// Evaluate scores version against the active one on the same decisions and checks
// the gates: the live decisions it predicted in shadow next to the active version
// when at least MinOutcomes of their attempts ended (Gates.Basis "shadow"), else the
// recorded retries, predicted now by both ("replay"). A version the registry does not hold is ledger.ErrNotFound; one
// that is active already, or that this autofix cannot load, an error wrapping
// ledger.ErrConflict. An active version that does not load fails a gate.
func (r *Registry) Evaluate(ctx context.Context, version int) (Evaluation, error) {
	var ev Evaluation
	activeVersion, err := r.o.Ledger.ActiveModel(ctx)
	if err != nil {
		return ev, err
	}
	if activeVersion == 0 {
		return ev, fmt.Errorf("the model registry is empty: %w", ledger.ErrNotFound)
	}
	cand, candModels, err := r.load(ctx, version)
	if err != nil {
		return ev, err
	}
	if version == activeVersion {
		return ev, fmt.Errorf("model version %d is already active: %w", version, ledger.ErrConflict)
	}
	active, activeModels, err := r.load(ctx, activeVersion)
	var unloadable *LoadError
	if err != nil && !errors.As(err, &unloadable) {
		return ev, err
	}
	ev.Active, ev.Candidate = active, cand
	g := &ev.Gates
	g.MinOutcomes, g.CalibrationMargin = r.o.Gates.MinOutcomes, r.o.Gates.CalibrationMargin
	g.Until = r.o.Now().UTC()
	g.Since = g.Until.Add(-r.o.Gates.Window)
	for _, v := range []ledger.ModelVersion{active, cand} {
		// Retries a version was trained on would flatter it: only those received
		// after both versions' training data are scored.
		if v.Source != ledger.SourceSimulator && !v.DataTo.Before(g.Since) {
			g.Since = v.DataTo.Add(time.Nanosecond)
		}
	}
	g.Failed = []string{}
	empty := ledger.ModelMetrics{Reliability: []ledger.ReliabilityBin{}}
	g.Active, g.Candidate = empty, empty
	if activeModels == nil {
		// Nothing to compare with: the figures are the candidate's alone.
		g.Failed = append(g.Failed, unloadable.Error()+": nothing to compare with")
	}
	g.Basis = ledger.GatesReplay
	sh, err := r.shadowReport(ctx, version)
	if err != nil {
		return ev, err
	}
	switch {
	case activeModels != nil && sh.Candidate.N >= g.MinOutcomes:
		// Enough live decisions predicted in shadow: they are what the candidate
		// would really have seen.
		g.Basis, g.Since, g.Until, g.Outcomes = ledger.GatesShadow, sh.Since, sh.Until, sh.Candidate.N
		g.Active, g.Candidate = sh.Active, sh.Candidate
	case !g.Since.Before(g.Until):
		g.Since = g.Until // both trained on data up to now: nothing after it yet
	default:
		p, err := r.score(ctx, g.Since, g.Until, activeModels, candModels)
		if err != nil {
			return ev, err
		}
		ev.Stats, g.Outcomes = p.stats, len(p.y)
		g.Candidate = metrics(models.Calibrate(p.candidate, p.y))
		if activeModels != nil {
			g.Active = metrics(models.Calibrate(p.active, p.y))
		}
	}
	if activeModels != nil {
		g.Failed = append(g.Failed, check(g)...)
	}
	if g.ShadowErrors = sh.Errors; sh.Errors > 0 {
		// Scored on the decisions it decided alone, a candidate that fails on the hard
		// ones would look good.
		g.Failed = append(g.Failed, fmt.Sprintf("the candidate's prediction failed on %d of the %d live decisions it saw in shadow",
			sh.Errors, sh.Decisions))
	}
	return ev, nil
}

// LoadError is the error of a registered version that this autofix cannot load
// (one a newer autofix registered, say). It is a conflict (errors.Is(err,
// ledger.ErrConflict)): the version cannot be made active.
type LoadError struct {
	Version int
	Err     error
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("model version %d does not load with this autofix: %v", e.Version, e.Err)
}

// Is makes a LoadError a ledger.ErrConflict.
func (e *LoadError) Is(target error) bool { return target == ledger.ErrConflict }

// Unwrap is the loader's error.
func (e *LoadError) Unwrap() error { return e.Err }

// check returns the gates g fails, one sentence each.
func check(g *ledger.ModelGates) []string {
	var failed []string
	if g.Outcomes < g.MinOutcomes {
		failed = append(failed, fmt.Sprintf("%d outcomes scored (%s of the failures received %s to %s), fewer than the %d the gate asks for",
			g.Outcomes, g.Basis, g.Since.Format(time.RFC3339), g.Until.Format(time.RFC3339), g.MinOutcomes))
	}
	if g.Outcomes == 0 {
		return failed // nothing to compare
	}
	a, c := &g.Active, &g.Candidate
	if c.ECE > a.ECE+g.CalibrationMargin {
		failed = append(failed, fmt.Sprintf("calibration: ECE %.4f is above the active's %.4f plus the margin %.4f", c.ECE, a.ECE, g.CalibrationMargin))
	}
	if !(c.LogLoss < a.LogLoss) {
		failed = append(failed, fmt.Sprintf("log-loss %.4f is not below the active's %.4f", c.LogLoss, a.LogLoss))
	}
	return failed
}

// load reads version and loads its models: a *LoadError when they do not load. The
// version is returned without its content.
func (r *Registry) load(ctx context.Context, version int) (ledger.ModelVersion, *models.Models, error) {
	v, err := r.o.Ledger.Model(ctx, version)
	if err != nil {
		return v, nil, err
	}
	m, err := models.Load(v.Content)
	v.Content = nil
	if err != nil {
		return v, nil, &LoadError{Version: version, Err: err}
	}
	return v, m, nil
}

// predictions are the two versions' P(success) of the same retries, and their
// outcomes (1 succeeded, 0 failed).
type predictions struct {
	active, candidate, y []float64
	stats                ledger.RetryStats
}

// scored is one retry's predictions.
type scored struct {
	at        time.Time
	id        string
	active    float64
	candidate float64
	succeeded bool
}

// score predicts the retries of the failures received in [since, until) with both
// models (the candidate's alone when active is nil): the latest MaxOutcomes of them, and of each namespace at most its latest
// MaxPerNamespace (EachRetry passes a namespace's templates together). It holds the
// predictions, not the retries.
func (r *Registry) score(ctx context.Context, since, until time.Time, active, cand *models.Models) (predictions, error) {
	var out predictions
	keep := &latest{cap: r.o.Gates.MaxOutcomes}
	ns := &latest{cap: r.o.Gates.MaxPerNamespace}
	namespace := ""
	flush := func() {
		for _, s := range ns.items {
			keep.add(s)
		}
		ns = &latest{cap: r.o.Gates.MaxPerNamespace}
	}
	sa, sc := &models.Scratch{}, &models.Scratch{}
	cat := &r.o.Catalogue
	stats, err := r.o.Ledger.EachRetry(ctx, ledger.RetryFilter{Since: since, Until: until, HistoryLimit: r.o.Gates.HistoryLimit},
		func(rt *ledger.Retry) error {
			if rt.Event.Job.Namespace != namespace {
				flush()
				namespace = rt.Event.Job.Namespace
			}
			ex := models.Example{Event: rt.Event, Category: rt.Category, History: rt.History, Option: rt.Option,
				Outcome: rt.Outcome, Result: rt.Result}
			s := scored{at: rt.ReceivedAt, id: rt.EventID, candidate: cand.PSuccess(&ex, cat, sc), succeeded: rt.Outcome.Succeeded}
			if active != nil {
				s.active = active.PSuccess(&ex, cat, sa)
			}
			ns.add(s)
			return nil
		})
	if err != nil {
		return out, err
	}
	flush()
	out.stats = stats
	for _, s := range keep.items {
		y := 0.0
		if s.succeeded {
			y = 1
		}
		out.active, out.candidate, out.y = append(out.active, s.active), append(out.candidate, s.candidate), append(out.y, y)
	}
	return out, nil
}

// latest keeps the latest of the scored retries added to it, up to its cap: a
// min-heap by time (the oldest is dropped first).
type latest struct {
	items []scored
	cap   int
}

func (l *latest) Len() int { return len(l.items) }
func (l *latest) Less(i, j int) bool {
	a, b := &l.items[i], &l.items[j]
	return a.at.Before(b.at) || a.at.Equal(b.at) && a.id < b.id
}
func (l *latest) Swap(i, j int) { l.items[i], l.items[j] = l.items[j], l.items[i] }
func (l *latest) Push(x any)    { l.items = append(l.items, x.(scored)) }
func (l *latest) Pop() any {
	n := len(l.items) - 1
	x := l.items[n]
	l.items = l.items[:n]
	return x
}

func (l *latest) add(s scored) {
	heap.Push(l, s)
	if l.Len() > l.cap {
		heap.Pop(l)
	}
}

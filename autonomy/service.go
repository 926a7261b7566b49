package autonomy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// Ledger is what the Service reads and writes: *ledger.Store.
type Ledger interface {
	GrantSource
	KindStats(ctx context.Context, f ledger.KindFilter) ([]ledger.KindStats, error)
	AutonomyChanges(ctx context.Context, limit int) ([]ledger.AutonomyChange, error)
	ChangeAutonomy(ctx context.Context, c ledger.AutonomyChange) (ledger.AutonomyChange, error)
	GrantOutcomes(ctx context.Context, grant int64, limit int) ([]bool, error)
}

// Actor is the actor of automatic revocations in the ledger and its audit trail.
const Actor = "autonomy"

// Options configure a Service.
type Options struct {
	// Ledger holds the figures and the grants. Required.
	Ledger Ledger
	// Thresholds are policy.autonomy. Required.
	Thresholds *policy.Autonomy
	// Log (default: none) and Now (default time.Now).
	Log *slog.Logger
	Now func() time.Time
}

// Service proposes kinds of fix for autonomy, grants and revokes it, and revokes
// it on its own when a granted kind's automatic fixes fail (Check, on the leader).
// Its metrics make it a prometheus.Collector. It is safe for concurrent use.
type Service struct {
	o      Options
	grants *Grants
	wake   chan struct{}

	granted     prometheus.Gauge
	revocations *prometheus.CounterVec

	// statsMu guards the figures List read last, reused for statsTTL: reading them
	// scans the window's failures (see List). extra are the figures of granted
	// kinds not in cached (out of the window, or past its size), read over the
	// same window and dropped with it.
	statsMu   sync.Mutex
	cached    []ledger.KindStats
	extra     map[ledger.Kind]ledger.KindStats
	statsFrom time.Time // the window's start and end
	statsTo   time.Time
}

// New returns the service of o.
func New(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{o: o, wake: make(chan struct{}, 1),
		granted: prometheus.NewGauge(prometheus.GaugeOpts{Name: "autofix_autonomy_granted",
			Help: "Kinds of fix (a category on a template) granted autonomy, as this replica last read them."}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "autofix_autonomy_revocations_total",
			Help: "Grants of autonomy revoked through this replica: by autonomy (the kind's automatic fixes failed) or a person."},
			[]string{"by"})}
	s.grants = NewGrants(o.Ledger)
	s.grants.changed = func(n int) { s.granted.Set(float64(n)) }
	return s
}

// Grants is the service's snapshot of the grants in force, for the intake.
func (s *Service) Grants() *Grants { return s.grants }

// Thresholds are the thresholds the service applies.
func (s *Service) Thresholds() policy.Autonomy { return *s.o.Thresholds }

// Describe and Collect make the service's metrics a prometheus.Collector.
func (s *Service) Describe(ch chan<- *prometheus.Desc) {
	s.granted.Describe(ch)
	s.revocations.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *Service) Collect(ch chan<- prometheus.Metric) {
	s.granted.Collect(ch)
	s.revocations.Collect(ch)
}

// Assessment is a kind of fix with its figures over the window, the thresholds it
// does not meet, and its grant.
type Assessment struct {
	ledger.KindStats
	// Unmet are the thresholds it does not meet, one sentence each; Passes when none.
	Unmet  []string
	Passes bool
	// Grant is the grant in force, nil if none.
	Grant *ledger.AutonomyChange
	// Proposed: it passes, is not granted, and can be (autonomy is enabled and its
	// kind is one ledger.CheckKind accepts).
	Proposed bool
}

// Listing is what List returns.
type Listing struct {
	// Since and Until bound the window the figures count.
	Since, Until time.Time
	// Kinds are every kind a person decided or whose attempt ended within the
	// window (those with the most decisions first, at most maxKinds), and every
	// granted kind.
	Kinds []Assessment
	// Changes are the latest grants and revocations, newest first.
	Changes []ledger.AutonomyChange
}

// Listing sizes.
const (
	maxKinds     = 1000
	changesShown = 20
)

// statsTTL is how long List reuses the figures it read: they cover weeks, and
// reading them scans every failure of the window (0.5 s for 50,000 on SQLite, on a
// shared 2-core machine), which a page shown to every reviewer must not do on each
// load. The grants in force and the changes are read afresh each time.
const statsTTL = time.Minute

// List assesses every kind of fix in the window, with the grants in force. Its
// figures may be up to statsTTL old (Since and Until say which window they cover);
// the grants are current.
func (s *Service) List(ctx context.Context) (Listing, error) {
	stats, since, until, err := s.windowStats(ctx)
	if err != nil {
		return Listing{}, err
	}
	out := Listing{Since: since, Until: until}
	grants, err := s.o.Ledger.AutonomyGrants(ctx)
	if err != nil {
		return out, err
	}
	byKind := make(map[ledger.Kind]*ledger.AutonomyChange, len(grants))
	for i := range grants {
		byKind[grants[i].Kind] = &grants[i]
	}
	listed := make(map[ledger.Kind]bool, len(stats))
	for i := range stats {
		listed[stats[i].Kind] = true
		out.Kinds = append(out.Kinds, s.assess(stats[i], byKind[stats[i].Kind]))
	}
	for i := range grants { // granted kinds out of the window or past the listing's size
		g := &grants[i]
		if listed[g.Kind] {
			continue
		}
		st, err := s.extraStats(ctx, g.Kind, since, until)
		if err != nil {
			return out, err
		}
		out.Kinds = append(out.Kinds, s.assess(st, g))
	}
	if out.Changes, err = s.o.Ledger.AutonomyChanges(ctx, changesShown); err != nil {
		return out, err
	}
	return out, nil
}

// windowStats are the figures of every kind over the window ending now, or those
// read less than statsTTL ago. Callers at the same time wait for one read.
func (s *Service) windowStats(ctx context.Context) ([]ledger.KindStats, time.Time, time.Time, error) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	now := s.o.Now()
	if s.cached != nil && !now.Before(s.statsTo) && now.Sub(s.statsTo) < statsTTL {
		return s.cached, s.statsFrom, s.statsTo, nil
	}
	since := now.Add(-s.o.Thresholds.Window)
	stats, err := s.o.Ledger.KindStats(ctx, ledger.KindFilter{Since: since, Until: now, Limit: maxKinds})
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	if stats == nil {
		stats = []ledger.KindStats{}
	}
	s.cached, s.extra, s.statsFrom, s.statsTo = stats, map[ledger.Kind]ledger.KindStats{}, since, now
	return stats, since, now, nil
}

// extraStats are the figures of granted kind k, not in the window's listing, over
// [since, until): those read with the listing's window, or read now and kept with
// it. A listing read meanwhile (another window) is not mixed with them.
func (s *Service) extraStats(ctx context.Context, k ledger.Kind, since, until time.Time) (ledger.KindStats, error) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	same := s.statsFrom.Equal(since) && s.statsTo.Equal(until)
	if st, ok := s.extra[k]; ok && same {
		return st, nil
	}
	st, err := s.stats(ctx, k, since, until)
	if err == nil && same {
		s.extra[k] = st
	}
	return st, err
}

func (s *Service) assess(st ledger.KindStats, g *ledger.AutonomyChange) Assessment {
	a := Assessment{KindStats: st, Unmet: Unmet(s.o.Thresholds, &st), Grant: g}
	a.Passes = len(a.Unmet) == 0
	a.Proposed = a.Passes && g == nil && s.o.Thresholds.Enabled && ledger.CheckKind(st.Kind) == nil
	return a
}

// stats are kind k's figures in [since, until): zero when it has none.
func (s *Service) stats(ctx context.Context, k ledger.Kind, since, until time.Time) (ledger.KindStats, error) {
	list, err := s.o.Ledger.KindStats(ctx, ledger.KindFilter{Since: since, Until: until, Kind: &k, Limit: 1})
	if err != nil || len(list) == 0 {
		return ledger.KindStats{Kind: k}, err
	}
	return list[0], nil
}

// UnmetError is Grant's error for a kind that does not pass the thresholds and was
// not forced. It is a conflict (errors.Is(err, ledger.ErrConflict)).
type UnmetError struct {
	Kind  ledger.Kind
	Unmet []string
}

func (e *UnmetError) Error() string {
	return fmt.Sprintf("%s does not meet policy.autonomy's thresholds: %s; force the grant, with a reason, to grant it all the same",
		e.Kind, strings.Join(e.Unmet, "; "))
}

// Unwrap makes an UnmetError a conflict.
func (e *UnmetError) Unwrap() error { return ledger.ErrConflict }

// ErrDisabled is wrapped by the error of a grant while policy.autonomy.enabled is
// off: nothing would honour it. It is a conflict.
var ErrDisabled = fmt.Errorf("graduated autonomy is off (policy.autonomy.enabled): a grant would not be honoured: %w", ledger.ErrConflict)

// Grant grants autonomy to kind k as actor: its figures over the window must pass
// the thresholds (an *UnmetError otherwise) unless force is set, which needs a
// reason and is recorded. A kind that cannot be granted is a *ledger.AutonomyError
// naming the field; one already granted is ledger.ErrConflict.
func (s *Service) Grant(ctx context.Context, k ledger.Kind, actor, reason string, force bool) (ledger.AutonomyChange, error) {
	ev, err := s.figures(ctx, k)
	if err != nil {
		return ledger.AutonomyChange{}, err
	}
	if !s.o.Thresholds.Enabled {
		return ledger.AutonomyChange{}, ErrDisabled
	}
	ev.Failed = Unmet(s.o.Thresholds, ev.Stats)
	if len(ev.Failed) > 0 && !force {
		return ledger.AutonomyChange{}, &UnmetError{k, ev.Failed}
	}
	c, err := s.o.Ledger.ChangeAutonomy(ctx, ledger.AutonomyChange{Kind: k, Action: ledger.AutonomyGrant, Forced: len(ev.Failed) > 0,
		Actor: actor, Reason: strings.TrimSpace(reason), At: ev.Until, Evidence: ev})
	if err != nil {
		return c, err
	}
	s.o.Log.Warn("autonomy granted: its fixes the rules would review now apply on their own", "category", k.Category,
		"template", k.Template, "by", actor, "forced", c.Forced, "reason", c.Reason)
	s.refresh(ctx)
	return c, nil
}

// Revoke revokes kind k's grant as actor, with a reason: its fixes go back to
// review. A kind not granted is ledger.ErrConflict.
func (s *Service) Revoke(ctx context.Context, k ledger.Kind, actor, reason string) (ledger.AutonomyChange, error) {
	ev, err := s.figures(ctx, k)
	if err != nil {
		return ledger.AutonomyChange{}, err
	}
	c, err := s.o.Ledger.ChangeAutonomy(ctx, ledger.AutonomyChange{Kind: k, Action: ledger.AutonomyRevoke, Actor: actor,
		Reason: strings.TrimSpace(reason), At: ev.Until, Evidence: ev})
	if err != nil {
		return c, err
	}
	s.revocations.WithLabelValues("person").Inc()
	s.o.Log.Warn("autonomy revoked: its fixes go to review", "category", k.Category, "template", k.Template, "by", actor,
		"reason", c.Reason)
	s.refresh(ctx)
	return c, nil
}

// figures checks kind k and reads its figures over the window ending now.
func (s *Service) figures(ctx context.Context, k ledger.Kind) (*ledger.AutonomyEvidence, error) {
	if err := ledger.CheckKind(k); err != nil {
		return nil, err
	}
	until := s.o.Now()
	since := until.Add(-s.o.Thresholds.Window)
	st, err := s.stats(ctx, k, since, until)
	if err != nil {
		return nil, err
	}
	return &ledger.AutonomyEvidence{Since: since, Until: until, Stats: &st}, nil
}

// refresh reads the grants in force after a change this replica made, so that it
// applies here at once.
func (s *Service) refresh(ctx context.Context) {
	if err := s.grants.Refresh(ctx); err != nil {
		s.o.Log.Warn("autonomy: could not read the grants in force after a change; the next poll will", "err", err)
	}
}

// Check revokes, as Actor, every grant whose fixes — those it applied, that the
// rules would have kept for review, not those the rules apply anyway — fail past
// the thresholds (Failing), and returns the revocations. A grant
// changed meanwhile by someone else is left to them. It does nothing while
// autonomy is off.
func (s *Service) Check(ctx context.Context) ([]ledger.AutonomyChange, error) {
	th := s.o.Thresholds
	if !th.Enabled {
		return nil, nil
	}
	grants, err := s.o.Ledger.AutonomyGrants(ctx)
	if err != nil {
		return nil, err
	}
	var out []ledger.AutonomyChange
	var errs []error
	for _, g := range grants {
		latest, err := s.o.Ledger.GrantOutcomes(ctx, g.Seq, th.RevertWindow)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		failing, counts := Failing(th, latest)
		if !failing {
			continue
		}
		reason := fmt.Sprintf("%d of the latest %d fixes the grant applied failed: at most %d of %d can succeed, under revertBelow %.0f%%",
			counts.Failed, counts.Total(), th.RevertWindow-counts.Failed, th.RevertWindow, 100*th.RevertBelow)
		c, err := s.o.Ledger.ChangeAutonomy(ctx, ledger.AutonomyChange{Kind: g.Kind, Action: ledger.AutonomyRevoke, Grant: g.Seq,
			Actor: Actor, Reason: reason, At: s.o.Now(), Evidence: &ledger.AutonomyEvidence{Since: g.At, Until: s.o.Now(), Recent: &counts}})
		switch {
		case errors.Is(err, ledger.ErrConflict):
			continue // revoked or granted anew meanwhile: theirs to judge
		case err != nil:
			errs = append(errs, err)
			continue
		}
		s.revocations.WithLabelValues(Actor).Inc()
		s.o.Log.Warn("autonomy revoked: the kind's automatic fixes fail; they go to review again", "category", g.Kind.Category,
			"template", g.Kind.Template, "grantedBy", g.Actor, "failed", counts.Failed, "of", counts.Total())
		out = append(out, c)
	}
	if len(out) > 0 {
		s.refresh(ctx)
	}
	return out, errors.Join(errs...)
}

// Wake asks the leader's loop (RunChecks) for a check now, as outcomes arrive. It
// never blocks.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wakeGap is the least time between two checks a wake starts: a burst of failures
// makes one check, not one each.
const wakeGap = 5 * time.Second

// RunChecks runs Check now and then every policy.autonomy.checkInterval, or when
// woken (at most once per wakeGap), until ctx ends: the leader's loop.
func (s *Service) RunChecks(ctx context.Context) {
	t := time.NewTicker(s.o.Thresholds.CheckInterval)
	defer t.Stop()
	for {
		if _, err := s.Check(ctx); err != nil && ctx.Err() == nil {
			s.o.Log.Warn("autonomy: checking the granted kinds' outcomes", "err", err)
		}
		gap := time.After(wakeGap)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			continue
		case <-s.wake:
		}
		select {
		case <-ctx.Done():
			return
		case <-gap:
		}
	}
}

// RunGrants keeps the replica's snapshot of the grants fresh: now, then every
// policy.autonomy.pollInterval, until ctx ends.
func (s *Service) RunGrants(ctx context.Context) {
	s.refresh(ctx)
	s.grants.Run(ctx, s.o.Thresholds.PollInterval, s.o.Log)
}

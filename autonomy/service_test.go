package autonomy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// now is the tests' clock.
var now = time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)

// fixtures records remediations of one kind in a real (SQLite) ledger.
type fixtures struct {
	t     *testing.T
	store *ledger.Store
	n     int
}

func newFixtures(t *testing.T) *fixtures {
	t.Helper()
	s, err := ledger.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &fixtures{t: t, store: s}
}

// fix records one remediation of category on namespace/template (training jobs)
// received at at: reviewed and decided by a person (approve or reject), or applied
// automatically by the rules ("auto") or by the kind's grant in force ("grant");
// then, if approved, ending in end ("" to keep it running).
func (f *fixtures) fix(cat failure.Category, template string, at time.Time, decision string, end ledger.State) {
	t := f.t
	t.Helper()
	f.n++
	id := fmt.Sprintf("ev-%d", f.n)
	ns, tmpl, _ := strings.Cut(template, "/")
	ev := &failure.Event{ID: id, Time: at, Source: "watcher", Job: failure.Job{Namespace: ns, Name: fmt.Sprintf("%s-%d", tmpl, f.n),
		Template: tmpl, Kind: failure.Training, Attempt: 1, Resources: failure.Resources{MemoryBytes: 8 << 30}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}}
	opt := failure.Option{Resources: failure.Resources{MemoryBytes: 12 << 30}, CostMultiple: 1.5, PSuccess: 0.9}
	rec := &failure.Recommendation{EventID: id, Classification: failure.Classification{Category: cat, Confidence: 0.9, Retryable: true},
		Retry: true, Options: []failure.Option{opt}, Chosen: 0}
	e := ledger.Entry{EventID: id, ReceivedAt: at, Event: ev, ChainID: ns + "/" + ev.Job.Name, Recommendation: rec,
		State: ledger.PendingReview, Actor: "policy", Reason: "no policy rule matched"}
	job := failure.AttemptName(ev.Job.Name, 2)
	ctx := context.Background()
	if decision == "auto" || decision == "grant" {
		e.State, e.Attempt = ledger.Approved, &ledger.Attempt{Number: 2, JobName: job, Resources: opt.Resources}
	}
	if decision == "grant" {
		e.Grant = f.grantOf(ledger.Kind{Category: cat, Template: template, JobKind: failure.Training})
	}
	if _, err := f.store.Record(ctx, []ledger.Entry{e}); err != nil {
		t.Fatal(err)
	}
	switch decision {
	case "approve":
		if err := f.store.Approve(ctx, id, ledger.Attempt{Number: 2, JobName: job, Resources: opt.Resources}, "alice", "", at); err != nil {
			t.Fatal(err)
		}
	case "reject":
		if err := f.store.Reject(ctx, id, "alice", "no", at); err != nil {
			t.Fatal(err)
		}
		return
	}
	if end == "" {
		return
	}
	if err := f.store.Transition(ctx, id, ledger.Approved, ledger.Submitted, "dispatcher", "", at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Finish(ctx, id, end, failure.Outcome{}, "watcher", "", at.Add(time.Duration(f.n)*time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// grant records actor's grant of kind k at at.
func (f *fixtures) grant(k ledger.Kind, actor string, at time.Time) ledger.AutonomyChange {
	f.t.Helper()
	g, err := f.store.ChangeAutonomy(context.Background(), ledger.AutonomyChange{Kind: k, Action: ledger.AutonomyGrant, Actor: actor, At: at})
	if err != nil {
		f.t.Fatal(err)
	}
	return g
}

// grantOf is the seq of kind k's grant in force.
func (f *fixtures) grantOf(k ledger.Kind) int64 {
	f.t.Helper()
	grants, err := f.store.AutonomyGrants(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	for _, g := range grants {
		if g.Kind == k {
			return g.Seq
		}
	}
	f.t.Fatalf("%s is not granted", k)
	return 0
}

// reviewed records n approved fixes of the kind that succeeded and m that failed,
// and r rejected ones, received at at.
func (f *fixtures) reviewed(cat failure.Category, template string, at time.Time, n, m, r int) {
	for range n {
		f.fix(cat, template, at, "approve", ledger.Succeeded)
	}
	for range m {
		f.fix(cat, template, at, "approve", ledger.Failed)
	}
	for range r {
		f.fix(cat, template, at, "reject", "")
	}
}

func newService(f *fixtures, th policy.Autonomy) *Service {
	return New(Options{Ledger: f.store, Thresholds: &th, Now: func() time.Time { return now }})
}

const trainer = "team-a/trainer"

func TestListProposesWhatPasses(t *testing.T) {
	f := newFixtures(t)
	day := now.Add(-24 * time.Hour)
	f.reviewed(failure.OOMMemory, trainer, day, 9, 1, 1)                             // 10 of 11 approved (91%), 9 of 10 worked
	f.reviewed(failure.DiskFull, trainer, day, 6, 4, 0)                              // 60% worked
	f.reviewed(failure.Timeout, "team-b/etl", day, 10, 0, 0)                         // passes, granted below
	f.reviewed(failure.OOMMemory, "team-c/old", day.Add(-40*24*time.Hour), 10, 0, 0) // out of the window
	s := newService(f, policy.DefaultAutonomy())
	ctx := context.Background()
	if _, err := s.Grant(ctx, ledger.Kind{Category: failure.Timeout, Template: "team-b/etl", JobKind: failure.Training}, "bob", "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.ChangeAutonomy(ctx, ledger.AutonomyChange{Kind: ledger.Kind{Category: failure.OOMMemory, Template: "team-c/old", JobKind: failure.Training},
		Action: ledger.AutonomyGrant, Forced: true, Actor: "bob", Reason: "an old favourite"}); err != nil {
		t.Fatal(err)
	}
	l, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range l.Kinds {
		got[a.Kind.String()] = fmt.Sprintf("passes=%v granted=%v proposed=%v reviews=%d outcomes=%d", a.Passes, a.Grant != nil, a.Proposed,
			a.Reviews(), a.Outcomes().Total())
	}
	want := map[string]string{
		"oom_memory on team-a/trainer (training)": "passes=true granted=false proposed=true reviews=11 outcomes=10",
		"disk_full on team-a/trainer (training)":  "passes=false granted=false proposed=false reviews=10 outcomes=10",
		"timeout on team-b/etl (training)":        "passes=true granted=true proposed=false reviews=10 outcomes=10",
		"oom_memory on team-c/old (training)":     "passes=false granted=true proposed=false reviews=0 outcomes=0",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("List: %s: %q, want %q", k, got[k], w)
		}
	}
	if len(got) != len(want) || !l.Since.Equal(now.Add(-720*time.Hour)) || len(l.Changes) != 2 {
		t.Errorf("List = %d kinds since %v, %d changes; want %d since %v, 2 changes", len(got), l.Since, len(l.Changes), len(want),
			now.Add(-720*time.Hour))
	}
	if g, ok := s.Grants().Granted(ledger.Kind{Category: failure.Timeout, Template: "team-b/etl", JobKind: failure.Training}); !ok || g.Actor != "bob" {
		t.Errorf("Grants().Granted after the grant = %+v, %v; want bob's at once", g, ok)
	}
}

func TestGrantNeedsThresholdsOrForce(t *testing.T) {
	f := newFixtures(t)
	f.reviewed(failure.OOMMemory, trainer, now.Add(-time.Hour), 5, 0, 0)
	s := newService(f, policy.DefaultAutonomy())
	ctx := context.Background()
	k := ledger.Kind{Category: failure.OOMMemory, Template: trainer, JobKind: failure.Training}
	_, err := s.Grant(ctx, k, "alice", "", false)
	var ue *UnmetError
	if !errors.As(err, &ue) || !errors.Is(err, ledger.ErrConflict) || len(ue.Unmet) != 2 {
		t.Fatalf("Grant of a kind with 5 reviews = %v; want an *UnmetError (a conflict) with 2 thresholds", err)
	}
	var ae *ledger.AutonomyError
	if _, err := s.Grant(ctx, k, "alice", " ", true); !errors.As(err, &ae) || ae.Field != "reason" {
		t.Errorf("forced Grant without a reason = %v, want an *AutonomyError naming reason", err)
	}
	c, err := s.Grant(ctx, k, "alice", "the team asked", true)
	if err != nil || !c.Forced || len(c.Evidence.Failed) != 2 || c.Evidence.Stats.Approved != 5 {
		t.Fatalf("forced Grant = %+v, %v; want it forced, with the figures and the unmet thresholds", c, err)
	}
	if _, err := s.Grant(ctx, ledger.Kind{Category: failure.UserCode, Template: trainer, JobKind: failure.Training}, "alice", "x", true); !errors.As(err, &ae) || ae.Field != "category" {
		t.Errorf("Grant of user_code = %v, want an *AutonomyError naming category", err)
	}
	if _, err := s.Revoke(ctx, k, "alice", "done"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Grants().Granted(k); ok {
		t.Error("Granted after Revoke = true, want the revocation at once")
	}
	if n := metric(t, s, "autofix_autonomy_revocations_total", "person"); n != 1 {
		t.Errorf("revocations by a person = %g, want 1", n)
	}
	off := policy.DefaultAutonomy()
	off.Enabled = false
	if _, err := newService(f, off).Grant(ctx, k, "alice", "x", true); !errors.Is(err, ErrDisabled) {
		t.Errorf("Grant while autonomy is off = %v, want ErrDisabled", err)
	}
}

// TestCheckRevokesAFailingKind: once so many of the fixes a grant applied failed
// that the window's success rate is under revertBelow, the leader's check revokes
// it as Actor; the kind's fixes before the grant, those the rules applied on their
// own, those a person approved, and other kinds' do not count.
func TestCheckRevokesAFailingKind(t *testing.T) {
	f := newFixtures(t)
	k := ledger.Kind{Category: failure.OOMMemory, Template: trainer, JobKind: failure.Training}
	f.reviewed(k.Category, k.Template, now.Add(-48*time.Hour), 10, 0, 0)
	for range 6 {
		f.fix(k.Category, k.Template, now.Add(-47*time.Hour), "auto", ledger.Failed) // before the grant
	}
	s := newService(f, policy.DefaultAutonomy())
	ctx := context.Background()
	g := f.grant(k, "alice", now.Add(-24*time.Hour))
	if err := s.Grants().Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	after := now.Add(-23 * time.Hour)
	check := func(wantRevoked int) {
		t.Helper()
		got, err := s.Check(ctx)
		if err != nil || len(got) != wantRevoked {
			t.Fatalf("Check = %+v, %v; want %d revocations", got, err, wantRevoked)
		}
	}
	for range 4 {
		f.fix(k.Category, k.Template, after, "grant", ledger.Failed)
	}
	f.fix(k.Category, k.Template, after, "auto", ledger.Failed)       // the rules'
	f.fix(k.Category, k.Template, after, "approve", ledger.Failed)    // a person's
	f.fix(failure.DiskFull, k.Template, after, "auto", ledger.Failed) // another kind
	check(0)                                                          // 4 of 10 failed: 60% may still succeed
	f.fix(k.Category, k.Template, after, "grant", ledger.Failed)
	revoked, err := s.Check(ctx)
	if err != nil || len(revoked) != 1 {
		t.Fatalf("Check after the 5th failure = %+v, %v; want one revocation", revoked, err)
	}
	r := revoked[0]
	if r.Actor != Actor || r.Grant != g.Seq || r.Evidence.Recent.Failed != 5 ||
		!strings.Contains(r.Reason, "5 of the latest 5 fixes the grant applied failed") {
		t.Errorf("revocation = %+v; want autonomy's, of grant %d, with the 5 failures", r, g.Seq)
	}
	if _, ok := s.Grants().Granted(k); ok {
		t.Error("Granted after the automatic revocation = true, want the kind back to review")
	}
	if n := metric(t, s, "autofix_autonomy_revocations_total", Actor); n != 1 {
		t.Errorf("autofix_autonomy_revocations_total{by=autonomy} = %g, want 1", n)
	}
	if n := metric(t, s, "autofix_autonomy_granted", ""); n != 0 {
		t.Errorf("autofix_autonomy_granted = %g, want 0", n)
	}
	check(0) // nothing granted any more
}

// metric is the value of s's metric name (with label by=by when by is set).
func metric(t *testing.T, s *Service, name, by string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(s); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() != name {
				continue
			}
			if by == "" {
				return m.GetGauge().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "by" && l.GetValue() == by {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestListReusesItsFiguresForAMinute: the window's figures are read once per
// statsTTL, whatever the number of page loads; the grants are read each time.
func TestListReusesItsFiguresForAMinute(t *testing.T) {
	f := newFixtures(t)
	f.reviewed(failure.OOMMemory, trainer, now.Add(-time.Hour), 10, 0, 0)
	clock := now
	th := policy.DefaultAutonomy()
	s := New(Options{Ledger: f.store, Thresholds: &th, Now: func() time.Time { return clock }})
	ctx := context.Background()
	proposed := func() bool {
		t.Helper()
		l, err := s.List(ctx)
		if err != nil || len(l.Kinds) != 1 {
			t.Fatalf("List = %+v, %v; want one kind", l, err)
		}
		return l.Kinds[0].Proposed
	}
	if !proposed() {
		t.Fatal("10 approved successes: not proposed")
	}
	f.reviewed(failure.OOMMemory, trainer, now.Add(-time.Hour), 0, 0, 5) // rejected: 10 of 15
	clock = now.Add(statsTTL - time.Second)
	if !proposed() {
		t.Error("within statsTTL: the figures were read again")
	}
	if _, err := f.store.ChangeAutonomy(ctx, ledger.AutonomyChange{Kind: ledger.Kind{Category: failure.OOMMemory, Template: trainer, JobKind: failure.Training},
		Action: ledger.AutonomyGrant, Actor: "bob"}); err != nil {
		t.Fatal(err)
	}
	if proposed() {
		t.Error("a granted kind is still proposed: the grants were not read afresh")
	}
	clock = now.Add(statsTTL)
	if l, _ := s.List(ctx); l.Kinds[0].Passes || l.Kinds[0].Rejected != 5 {
		t.Errorf("after statsTTL: %+v; want the 5 rejections read", l.Kinds[0])
	}
}

// countingLedger counts the figures read through it from a real ledger.
type countingLedger struct {
	*ledger.Store
	reads int
}

func (c *countingLedger) KindStats(ctx context.Context, f ledger.KindFilter) ([]ledger.KindStats, error) {
	c.reads++
	return c.Store.KindStats(ctx, f)
}

// TestListCachesGrantedKindsFigures: the figures of a granted kind missing from the
// window's listing (no failure in the window) are read once per statsTTL, with the
// listing, not on every page load.
func TestListCachesGrantedKindsFigures(t *testing.T) {
	f := newFixtures(t)
	f.reviewed(failure.OOMMemory, trainer, now.Add(-time.Hour), 10, 0, 0)
	ctx := context.Background()
	quiet := ledger.Kind{Category: failure.Timeout, Template: "team-q/quiet", JobKind: failure.Batch}
	if _, err := f.store.ChangeAutonomy(ctx, ledger.AutonomyChange{Kind: quiet, Action: ledger.AutonomyGrant, Forced: true,
		Actor: "bob", Reason: "before the window"}); err != nil {
		t.Fatal(err)
	}
	clock := now
	th := policy.DefaultAutonomy()
	led := &countingLedger{Store: f.store}
	s := New(Options{Ledger: led, Thresholds: &th, Now: func() time.Time { return clock }})
	for i := range 3 {
		l, err := s.List(ctx)
		if err != nil || len(l.Kinds) != 2 {
			t.Fatalf("List %d = %+v, %v; want the window's kind and the granted one", i, l, err)
		}
	}
	if led.reads != 2 {
		t.Errorf("3 page loads within statsTTL read figures %d times, want 2 (the window, the granted kind)", led.reads)
	}
	clock = now.Add(statsTTL)
	if _, err := s.List(ctx); err != nil {
		t.Fatal(err)
	}
	if led.reads != 4 {
		t.Errorf("after statsTTL: %d reads in all, want 4 (both read again)", led.reads)
	}
}

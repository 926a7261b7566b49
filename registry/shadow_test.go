package registry

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
)

// TestShadowEvaluationDecidesTheGates: a candidate evaluated in shadow is picked up
// by a replica's Poll; its live predictions, recorded with the decisions, are scored
// against the outcomes next to the active version's; once enough attempts ended,
// the gates read them rather than the replay. A candidate that knows nothing on
// replay (a constant) but predicted the live decisions well passes on what it
// really predicted; promoted, it needs no shadow any more.
func TestShadowEvaluationDecidesTheGates(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	store := openLedger(t, path)
	r := newRegistry(t, store, Gates{MinOutcomes: 100})
	var shadowed []int
	replica, err := New(Options{Ledger: openLedger(t, path), Now: r.o.Now, OnShadow: func(v int, m *models.Models) {
		if (v == 0) != (m == nil) {
			t.Errorf("OnShadow(%d, %v): version and models disagree", v, m)
		}
		shadowed = append(shadowed, v)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.EnsureDefault(ctx, "autofix"); err != nil {
		t.Fatal(err)
	}
	cand, err := r.Register(ctx, constant(t, 2), Registration{Actor: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.StopShadow(ctx, ShadowChange{Actor: "ada"}); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("StopShadow with none under way = %v; want a conflict", err)
	}
	if _, err := r.StartShadow(ctx, 1, ShadowChange{Actor: "ada"}); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("StartShadow(the active version) = %v; want a conflict", err)
	}
	if _, err := r.StartShadow(ctx, cand.Version, ShadowChange{Actor: "ada", Reason: "trained on march"}); err != nil {
		t.Fatal(err)
	}
	if err := replica.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if sh := replica.Shadowed(); sh.Version != cand.Version || sh.Models == nil || len(shadowed) != 1 {
		t.Fatalf("the replica shadows %+v (told %v); want version %d", sh, shadowed, cand.Version)
	}

	// The live decisions: the candidate was sure of the fixes that worked, and of
	// those that did not, and would have changed the configuration of the latter.
	fillShadowed(t, store, plan(150), func(succeeds bool) *failure.Shadow {
		if succeeds {
			return &failure.Shadow{Version: cand.Version, PSuccess: 0.97, Retry: true,
				Option: &failure.Option{PSuccess: 0.97, ExpectedCost: 2}}
		}
		return &failure.Shadow{Version: cand.Version, PSuccess: 0.05, Retry: false, Changed: true}
	})
	rep, err := r.ShadowReport(ctx, cand.Version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("shadow: %d decisions; log-loss %.4f (active) vs %.4f (candidate); changes %+v", rep.Decisions,
		rep.Active.LogLoss, rep.Candidate.LogLoss, rep.Changes)
	failed := 0
	for _, p := range plan(150) {
		if p.mem < p.need {
			failed++
		}
	}
	if rep.Decisions != 150 || rep.Active.N != 150 || rep.Candidate.N != 150 || rep.Pending != 0 || rep.ActiveVersion != 1 {
		t.Errorf("report of %d decisions, %d and %d scored, %d pending, active %d; want 150 of 150 of version 1", rep.Decisions,
			rep.Active.N, rep.Candidate.N, rep.Pending, rep.ActiveVersion)
	}
	if c := rep.Changes; c.Total != failed || c.NoRetry != failed || c.LostFixes != 0 || c.Retry != 0 || c.Configuration != 0 {
		t.Errorf("changes %+v; want the %d failed fixes not retried, no fix lost", c, failed)
	}
	if !(rep.Candidate.LogLoss < rep.Active.LogLoss) {
		t.Errorf("candidate log-loss %.4f, active %.4f: the candidate predicted better", rep.Candidate.LogLoss, rep.Active.LogLoss)
	}

	ev, err := r.Evaluate(ctx, cand.Version)
	if err != nil {
		t.Fatal(err)
	}
	if g := ev.Gates; g.Basis != ledger.GatesShadow || g.Outcomes != 150 || !g.Passed() {
		t.Errorf("gates %+v; want the shadow's 150 outcomes, passed", g)
	}
	// On replay the same constant fails (what TestPromoteBehindGates shows): the
	// gates read what it predicted live.
	strict := newRegistry(t, store, Gates{MinOutcomes: 151})
	if ev, err := strict.Evaluate(ctx, cand.Version); err != nil || ev.Gates.Basis != ledger.GatesReplay || ev.Gates.Passed() {
		t.Errorf("with fewer shadow outcomes than the gate asks for: gates %+v, %v; want the replay's, failed", ev.Gates, err)
	}
	if _, _, err := r.Promote(ctx, cand.Version, Promotion{Actor: "ada"}); err != nil {
		t.Fatal(err)
	}
	if err := replica.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if sh := replica.Shadowed(); sh.Version != 0 || len(shadowed) != 2 || shadowed[1] != 0 {
		t.Errorf("after the promotion the replica shadows %+v (told %v); want none", sh, shadowed)
	}
}

// TestShadowOfAVersionThatDoesNotLoad: the replica logs it and shadows nothing;
// starting such a shadow is refused.
func TestShadowOfAVersionThatDoesNotLoad(t *testing.T) {
	ctx := context.Background()
	store := openLedger(t, filepath.Join(t.TempDir(), "ledger.db"))
	r := newRegistry(t, store, Gates{})
	if _, _, err := r.EnsureDefault(ctx, "autofix"); err != nil {
		t.Fatal(err)
	}
	newer, err := store.RegisterModel(ctx, ledger.ModelVersion{Name: "v3-format", Source: ledger.SourceSimulator, RegisteredBy: "ci",
		Content: []byte(`{"kind":"autofix-retry-models","version":3}`)})
	if err != nil {
		t.Fatal(err)
	}
	var le *LoadError
	if _, err := r.StartShadow(ctx, newer.Version, ShadowChange{Actor: "ada"}); !errors.As(err, &le) {
		t.Errorf("StartShadow(a version that does not load) = %v; want a LoadError", err)
	}
	if _, err := store.SetModelShadow(ctx, ledger.ModelShadow{Version: newer.Version, Actor: "ci"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Poll(ctx); err != nil {
		t.Errorf("Poll with a shadow that does not load = %v; want it logged, not returned", err)
	}
	if sh := r.Shadowed(); sh.Version != 0 {
		t.Errorf("shadowing %+v; want nothing", sh)
	}
	if _, err := r.ShadowReport(ctx, 99); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("ShadowReport(99) = %v; want not found", err)
	}
}

// TestShadowReportIsReusedForAMinute: the report the models page and the API read on
// every view is made again only after a minute, or when the versions change.
func TestShadowReportIsReusedForAMinute(t *testing.T) {
	ctx := context.Background()
	store := openLedger(t, filepath.Join(t.TempDir(), "ledger.db"))
	clock := now
	r, err := New(Options{Ledger: store, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.EnsureDefault(ctx, "autofix"); err != nil {
		t.Fatal(err)
	}
	cand, err := r.Register(ctx, constant(t, 2), Registration{Actor: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	shadow := func(bool) *failure.Shadow { return &failure.Shadow{Version: cand.Version, PSuccess: 0.5} }
	fillShadowed(t, store, plan(10), shadow)
	first, err := r.ShadowReport(ctx, cand.Version)
	if err != nil || first.Decisions != 10 {
		t.Fatalf("ShadowReport = %d decisions, %v; want 10", first.Decisions, err)
	}
	more := plan(12)[10:]
	for i := range more {
		more[i].id = fmt.Sprintf("more-%d", i)
	}
	fillShadowed(t, store, more, shadow)
	clock = now.Add(59 * time.Second)
	if again, _ := r.ShadowReport(ctx, cand.Version); again.Decisions != 10 {
		t.Errorf("a second later: %d decisions; want the same report, 10", again.Decisions)
	}
	if ev, _ := r.Evaluate(ctx, cand.Version); ev.Gates.Basis != ledger.GatesReplay {
		t.Errorf("Evaluate's basis %q", ev.Gates.Basis)
	}
	clock = now.Add(61 * time.Second)
	if later, _ := r.ShadowReport(ctx, cand.Version); later.Decisions != 12 {
		t.Errorf("a minute later: %d decisions; want 12", later.Decisions)
	}
}

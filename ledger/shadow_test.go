package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

// withShadow is e with a shadow prediction of candidate version 2 next to the
// active version 1: the candidate's P(success) of the active's choice is p, and it
// would have retried (with another configuration costing candCost) when retry.
func withShadow(e Entry, p float64, retry bool, candCost float64) Entry {
	rec := *e.Recommendation
	rec.ModelRegistryVersion = 1
	sh := &failure.Shadow{Version: 2, PSuccess: p, Retry: retry}
	if retry {
		o := rec.Options[0]
		o.Resources.MemoryBytes *= 2
		o.PSuccess, o.ExpectedCost = 0.97, candCost
		sh.Option = &o
	}
	sh.Changed = retry != rec.Retry || retry
	rec.Shadow = sh
	e.Recommendation = &rec
	return e
}

// TestShadowPredictionsAreRecordedAndJoinedWithOutcomes: a decision with a shadow
// prediction keeps it in shadow_predictions, and EachShadowPrediction passes it
// with how its attempt ended and what that cost, the latest decision first.
func TestShadowPredictionsAreRecordedAndJoinedWithOutcomes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s,
			withShadow(entry("ok", Approved, entryOpt{at: t0}), 0.8, true, 9),
			withShadow(entry("bad", Approved, entryOpt{at: t0.Add(time.Minute)}), 0.3, false, 0),
			withShadow(entry("running", Approved, entryOpt{at: t0.Add(2 * time.Minute)}), 0.5, true, 7),
			withShadow(entry("review", PendingReview, entryOpt{at: t0.Add(3 * time.Minute)}), 0.6, true, 8),
			entry("no-shadow", Approved, entryOpt{at: t0.Add(4 * time.Minute)}))
		finish(t, s, "ok", Succeeded, failure.Outcome{Succeeded: true, Cost: 12.5}, t0.Add(time.Hour))
		finish(t, s, "bad", Failed, failure.Outcome{Cost: 4.25}, t0.Add(time.Hour))
		var got []ShadowPrediction
		err := s.EachShadowPrediction(ctx, ShadowFilter{Version: 2, ActiveVersion: 1}, func(p *ShadowPrediction) error {
			got = append(got, *p)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range got {
			ids = append(ids, p.EventID)
		}
		if want := "review running bad ok"; strings.Join(ids, " ") != want {
			t.Fatalf("EachShadowPrediction passed %v, want %s", ids, want)
		}
		ok, bad, running := got[3], got[2], got[1]
		if ok.Outcome != Succeeded || ok.AttemptCost != 12.5 || !ok.ActiveRetry || ok.PActive != 0.91 || ok.PCandidate != 0.8 ||
			!ok.CandidateRetry || ok.CandidateP != 0.97 || ok.CandidateCost != 9 || ok.ActiveCost != 6.8 || !ok.Changed ||
			ok.Namespace != "team-a" {
			t.Errorf("ok = %+v", ok)
		}
		if bad.Outcome != Failed || bad.AttemptCost != 4.25 || bad.CandidateRetry || !bad.Changed || bad.PCandidate != 0.3 {
			t.Errorf("bad = %+v", bad)
		}
		if running.Outcome != "" || running.AttemptCost != 0 {
			t.Errorf("running = %+v, want no outcome yet", running)
		}
		// Another pair of versions, or a window that excludes them, selects nothing.
		for _, f := range []ShadowFilter{{Version: 3, ActiveVersion: 1}, {Version: 2, ActiveVersion: 4},
			{Version: 2, ActiveVersion: 1, Since: t0.Add(5 * time.Minute)}, {Version: 2, ActiveVersion: 1, Until: t0}} {
			n := 0
			if err := s.EachShadowPrediction(ctx, f, func(*ShadowPrediction) error { n++; return nil }); err != nil || n != 0 {
				t.Errorf("EachShadowPrediction(%+v) passed %d (err %v), want none", f, n, err)
			}
		}
		n := 0
		if err := s.EachShadowPrediction(ctx, ShadowFilter{Version: 2, ActiveVersion: 1, Limit: 2},
			func(*ShadowPrediction) error { n++; return nil }); err != nil || n != 2 {
			t.Errorf("EachShadowPrediction with limit 2 passed %d (err %v)", n, err)
		}
		// Retention prunes a remediation's shadow prediction with it.
		if _, err := s.Prune(ctx, t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		ids = nil
		if err := s.EachShadowPrediction(ctx, ShadowFilter{Version: 2, ActiveVersion: 1}, func(p *ShadowPrediction) error {
			ids = append(ids, p.EventID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if want := "review running"; strings.Join(ids, " ") != want {
			t.Errorf("after pruning, EachShadowPrediction passed %v, want %s", ids, want)
		}
	})
}

// TestForgedShadowFiguresNeverBlockTheDecision: a shadow whose figures are out of
// range is recorded as the candidate's error, and the decision itself is recorded.
func TestForgedShadowFiguresNeverBlockTheDecision(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		e := withShadow(entry("nan", Approved, entryOpt{}), math.NaN(), true, 3)
		if fresh := mustRecord(t, s, e); !fresh[0] {
			t.Fatal("the decision was not recorded")
		}
		var got []ShadowPrediction
		if err := s.EachShadowPrediction(context.Background(), ShadowFilter{Version: 2, ActiveVersion: 1},
			func(p *ShadowPrediction) error { got = append(got, *p); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !strings.Contains(got[0].Error, "pSuccess") {
			t.Fatalf("got %+v, want one prediction whose error names pSuccess", got)
		}
	})
}

// TestModelShadowChanges: starting, replacing and stopping the shadow evaluation,
// each audited; the active version, a version not registered and a change that
// changes nothing are refused.
func TestModelShadowChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if st, err := s.ModelShadowState(ctx); err != nil || st.Version != 0 || st.Seq != 0 {
			t.Fatalf("ModelShadowState of a fresh ledger = %+v, %v; want none", st, err)
		}
		for _, c := range []string{"a", "b", "c"} {
			if _, err := s.RegisterModel(ctx, modelAt(c, 0, t0)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.SetModelShadow(ctx, ModelShadow{Version: 1, Actor: "ada"}); !errors.Is(err, ErrConflict) {
			t.Errorf("shadowing the active version: err %v, want a conflict", err)
		}
		if _, err := s.SetModelShadow(ctx, ModelShadow{Version: 9, Actor: "ada"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("shadowing version 9 of 3: err %v, want not found", err)
		}
		if _, err := s.SetModelShadow(ctx, ModelShadow{Actor: "ada"}); !errors.Is(err, ErrConflict) {
			t.Errorf("stopping with nothing shadowed: err %v, want a conflict", err)
		}
		var me *ModelError
		if _, err := s.SetModelShadow(ctx, ModelShadow{Version: 2}); !errors.As(err, &me) || me.Field != "actor" {
			t.Errorf("no actor: err %v, want a ModelError of field actor", err)
		}
		sh, err := s.SetModelShadow(ctx, ModelShadow{Version: 2, Actor: "ada", Reason: "march data", At: t0})
		if err != nil || sh.Seq != 1 {
			t.Fatalf("SetModelShadow(2) = %+v, %v", sh, err)
		}
		if _, err := s.SetModelShadow(ctx, ModelShadow{Version: 2, Actor: "ada"}); !errors.Is(err, ErrConflict) {
			t.Errorf("shadowing version 2 twice: err %v, want a conflict", err)
		}
		if _, err := s.SetModelShadow(ctx, ModelShadow{Version: 3, Actor: "bob", At: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.ModelShadowState(ctx); st.Version != 3 || st.Actor != "bob" || !st.At.Equal(t0.Add(time.Hour)) {
			t.Errorf("ModelShadowState = %+v, want version 3 by bob", st)
		}
		if _, err := s.SetModelShadow(ctx, ModelShadow{Actor: "bob", Reason: "enough"}); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.ModelShadowState(ctx); st.Version != 0 || st.Seq != 3 {
			t.Errorf("after stopping, ModelShadowState = %+v, want version 0, seq 3", st)
		}
		audit := strings.Join(registryAudit(t, s), "\n")
		for _, want := range []string{"model version 2 evaluated in shadow of the active version 1; reason: march data",
			"model version 3 evaluated in shadow of the active version 1 (instead of version 2)",
			"shadow evaluation of model version 3 stopped; reason: enough"} {
			if !strings.Contains(audit, want) {
				t.Errorf("audit trail lacks %q:\n%s", want, audit)
			}
		}
	})
}

// TestShadowPredictionsCapEachNamespace: a namespace that floods the window with
// failures does not crowd the others out of the predictions read; each row says
// whether its attempt ran the choice.
func TestShadowPredictionsCapEachNamespace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		var entries []Entry
		for i := range 6 {
			entries = append(entries, withShadow(entry(fmt.Sprintf("flood-%d", i), Approved,
				entryOpt{ns: "flood", at: t0.Add(time.Duration(10+i) * time.Minute)}), 0.5, false, 0))
		}
		entries = append(entries, withShadow(entry("quiet", Approved, entryOpt{ns: "quiet", at: t0}), 0.5, false, 0))
		mustRecord(t, s, entries...)
		var got []string
		err := s.EachShadowPrediction(context.Background(), ShadowFilter{Version: 2, ActiveVersion: 1, Limit: 4, MaxPerNamespace: 2},
			func(p *ShadowPrediction) error {
				if !p.Ran || p.State != Approved {
					t.Errorf("%s: ran %v, state %s; want an approved attempt that runs the choice", p.EventID, p.Ran, p.State)
				}
				got = append(got, p.EventID)
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if want := "flood-5 flood-4 quiet"; strings.Join(got, " ") != want {
			t.Errorf("read %v, want %s: two of the flood, and the quiet namespace's", got, want)
		}
	})
}

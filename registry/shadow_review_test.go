package registry

import (
	"context"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// TestShadowGatesFailOnTheCandidatesErrors: a candidate whose prediction fails (a
// panic, a NaN: failure.Shadow.Error) on every decision whose fix failed, and is sure
// of the rest, is scored on the successes only; the gates once passed it on basis
// "shadow" (found by review). A gate now fails on any such error.
func TestShadowGatesFailOnTheCandidatesErrors(t *testing.T) {
	ctx := context.Background()
	r, store, cand := withCandidate(t, Gates{MinOutcomes: 50})
	fillShadowed(t, store, plan(150), func(succeeds bool) *failure.Shadow {
		if succeeds {
			return &failure.Shadow{Version: cand.Version, PSuccess: 0.97, Retry: true, Option: &failure.Option{PSuccess: 0.97}}
		}
		return &failure.Shadow{Version: cand.Version, Error: "the candidate's P(success) is NaN"}
	})
	rep, err := r.ShadowReport(ctx, cand.Version)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := r.Evaluate(ctx, cand.Version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %d decisions, %d errors, scored %d; gates basis %s passed %v %v", rep.Decisions, rep.Errors, rep.Candidate.N,
		ev.Gates.Basis, ev.Gates.Passed(), ev.Gates.Failed)
	if ev.Gates.Basis == ledger.GatesShadow && ev.Gates.Passed() {
		t.Errorf("a candidate that failed to predict %d of %d decisions (every one whose fix failed) passes the gates", rep.Errors, rep.Decisions)
	}
}

// TestShadowScoresOnlyTheChoiceThatRan: a reviewer approved another option (or
// edited it); the attempt ran that, and the report once scored both versions'
// P(success) of the chosen option against its outcome — an approver could steer the
// gates (found by review). Such a retry is counted as edited, not scored.
func TestShadowScoresOnlyTheChoiceThatRan(t *testing.T) {
	ctx := context.Background()
	r, store, cand := withCandidate(t, Gates{MinOutcomes: 1})
	at := now.Add(-time.Hour)
	res := func(gib int64) failure.Resources { return failure.Resources{CPUMillis: 4000, MemoryBytes: gib << 30} }
	ev := &failure.Event{ID: "e1", Time: at, Source: "watcher", Job: failure.Job{Namespace: "team-a", Name: "j1", Kind: failure.Batch,
		Template: "etl", Attempt: 1, Resources: res(8)}, Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}}
	small, big := failure.Option{Resources: res(9), PSuccess: 0.2, PFix: 0.2}, failure.Option{Resources: res(64), PSuccess: 0.99, PFix: 0.99}
	rec := &failure.Recommendation{EventID: "e1", Classification: failure.Classification{Category: failure.OOMMemory, Confidence: 0.9, Retryable: true},
		Retry: true, Options: []failure.Option{small, big}, Chosen: 0, ModelRegistryVersion: 1,
		Shadow: &failure.Shadow{Version: cand.Version, PSuccess: 0.97, Retry: true, Option: &small}}
	if _, err := store.Record(ctx, []ledger.Entry{{EventID: "e1", ReceivedAt: at, Event: ev, ChainID: "team-a/j1", Recommendation: rec,
		State: ledger.PendingReview, Actor: "policy"}}); err != nil {
		t.Fatal(err)
	}
	// The approver picks the 64 GiB option: that is what runs, and it succeeds.
	if err := store.Approve(ctx, "e1", ledger.Attempt{Number: 2, JobName: "j1-af2", Resources: big.Resources, Option: &big}, "bob",
		"approved option 1", at); err != nil {
		t.Fatal(err)
	}
	if err := store.Transition(ctx, "e1", ledger.Approved, ledger.Submitted, "dispatcher", "", at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := store.Finish(ctx, "e1", ledger.Succeeded, failure.Outcome{Resources: big.Resources, Succeeded: true}, "watcher", "",
		at.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	rep, err := r.ShadowReport(ctx, cand.Version)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Edited != 1 {
		t.Errorf("Edited = %d, want the retry that ran the 64 GiB option", rep.Edited)
	}
	if rep.Candidate.N != 0 {
		t.Errorf("the shadow scored %d outcome(s): P(success) of the 9 GiB option (active 0.2, candidate 0.97) against the 64 GiB option's success",
			rep.Candidate.N)
	}
}

// TestShadowPendingCountsOnlyRetriesThatMayRun: a retry the reviewer rejected never
// runs; the report once counted it pending for ever (found by review).
func TestShadowPendingCountsOnlyRetriesThatMayRun(t *testing.T) {
	ctx := context.Background()
	r, store, cand := withCandidate(t, Gates{})
	at := now.Add(-time.Hour)
	ev := &failure.Event{ID: "e1", Time: at, Source: "watcher", Job: failure.Job{Namespace: "team-a", Name: "j1", Kind: failure.Batch,
		Template: "etl", Attempt: 1}, Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}}
	opt := failure.Option{PSuccess: 0.5, PFix: 0.5}
	rec := &failure.Recommendation{EventID: "e1", Classification: failure.Classification{Category: failure.OOMMemory, Confidence: 0.9, Retryable: true},
		Retry: true, Options: []failure.Option{opt}, Chosen: 0, ModelRegistryVersion: 1,
		Shadow: &failure.Shadow{Version: cand.Version, PSuccess: 0.5}}
	if _, err := store.Record(ctx, []ledger.Entry{{EventID: "e1", ReceivedAt: at, Event: ev, ChainID: "team-a/j1", Recommendation: rec,
		State: ledger.PendingReview, Actor: "policy"}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Reject(ctx, "e1", "bob", "no", at); err != nil {
		t.Fatal(err)
	}
	rep, err := r.ShadowReport(ctx, cand.Version)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pending != 0 {
		t.Errorf("Pending = %d for a rejected retry that will never run", rep.Pending)
	}
}

// TestPromotionEndsTheShadow: promoting the shadowed version ends its evaluation in
// the ledger; it once stayed recorded as shadowed, and a rollback away from it
// silently evaluated it in shadow again (found by review).
func TestPromotionEndsTheShadow(t *testing.T) {
	ctx := context.Background()
	r, _, cand := withCandidate(t, Gates{})
	if _, err := r.StartShadow(ctx, cand.Version, ShadowChange{Actor: "ada"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Promote(ctx, cand.Version, Promotion{Actor: "ada", Force: true, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.ShadowState(ctx); st.Version != 0 {
		t.Errorf("after promoting version %d the ledger still evaluates version %d in shadow", cand.Version, st.Version)
	}
	if _, _, err := r.Rollback(ctx, 1, Promotion{Actor: "ada", Reason: "v2 misbehaves"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if sh := r.Shadowed(); sh.Version != 0 {
		t.Errorf("after rolling back from version %d, the replica evaluates it in shadow again", sh.Version)
	}
}

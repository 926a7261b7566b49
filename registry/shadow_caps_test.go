package registry

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// shadowDecision records one retryable decision of version 1 in namespace ns at at,
// predicted in shadow by sh; with end != "" its fix (the chosen option, applied by
// the policy) ran and ended so, else it waits for review.
func shadowDecision(t *testing.T, store *ledger.Store, id, ns string, at time.Time, sh *failure.Shadow, end ledger.State) {
	t.Helper()
	ctx := context.Background()
	res := failure.Resources{CPUMillis: 4000, MemoryBytes: 16 << 30}
	ev := &failure.Event{ID: id, Time: at, Source: "watcher", Job: failure.Job{Namespace: ns, Name: id, Kind: failure.Batch,
		Template: "etl", Attempt: 1, Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}}
	opt := failure.Option{Resources: res, PSuccess: 0.6, PFix: 0.6}
	rec := &failure.Recommendation{EventID: id, Classification: failure.Classification{Category: failure.OOMMemory, Confidence: 0.9,
		Retryable: true}, Retry: true, Options: []failure.Option{opt}, Chosen: 0, ModelRegistryVersion: 1, Shadow: sh}
	e := ledger.Entry{EventID: id, ReceivedAt: at, Event: ev, ChainID: "chain-" + id, Recommendation: rec, State: ledger.PendingReview,
		Actor: "policy"}
	if end != "" {
		e.State, e.Attempt = ledger.Approved, &ledger.Attempt{Number: 2, JobName: id + "-af2", Resources: res, Option: &opt}
	}
	if _, err := store.Record(ctx, []ledger.Entry{e}); err != nil {
		t.Fatal(err)
	}
	if end == "" {
		return
	}
	if err := store.Transition(ctx, id, ledger.Approved, ledger.Submitted, "dispatcher", "", at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := store.Finish(ctx, id, end, failure.Outcome{Resources: res, Succeeded: end == ledger.Succeeded}, "watcher", "",
		at.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// TestShadowNamespaceCapCountsScoredOutcomes: the cap on each namespace counts the
// decisions that can be scored. It once counted every decision, newest first: a busy
// namespace's newest, still waiting for review, took its whole cap, and none of its
// ended retries was scored (found by review).
func TestShadowNamespaceCapCountsScoredOutcomes(t *testing.T) {
	ctx := context.Background()
	r, store, cand := withCandidate(t, Gates{MaxPerNamespace: 3, MinOutcomes: 1})
	sh := func() *failure.Shadow { return &failure.Shadow{Version: cand.Version, PSuccess: 0.7} }
	base := now.Add(-48 * time.Hour)
	for i := range 10 {
		end := ledger.Succeeded
		if i%2 == 0 {
			end = ledger.Failed
		}
		shadowDecision(t, store, fmt.Sprintf("busy-ended-%d", i), "busy", base.Add(time.Duration(i)*time.Minute), sh(), end)
	}
	for i := range 3 {
		shadowDecision(t, store, fmt.Sprintf("busy-waiting-%d", i), "busy", now.Add(-time.Duration(10-i)*time.Minute), sh(), "")
	}
	for i := range 3 {
		shadowDecision(t, store, fmt.Sprintf("quiet-%d", i), "quiet", base.Add(time.Duration(i)*time.Minute), sh(), ledger.Succeeded)
	}
	rep, err := r.ShadowReport(ctx, cand.Version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("decisions %d pending %d scored %d", rep.Decisions, rep.Pending, rep.Candidate.N)
	if rep.Candidate.N != 6 {
		t.Errorf("scored %d outcomes, want 6: 3 of busy's 10 ended retries (its cap) and quiet's 3", rep.Candidate.N)
	}
}

// TestShadowErrorsAreCountedPastTheCaps: the gate on the candidate's errors sees
// every decision in the window. It once saw only those the caps read: a candidate
// that failed on a busy namespace's older decisions passed once that namespace's
// newer ones filled its cap (found by review).
func TestShadowErrorsAreCountedPastTheCaps(t *testing.T) {
	ctx := context.Background()
	r, store, cand := withCandidate(t, Gates{MaxPerNamespace: 5, MinOutcomes: 1})
	base := now.Add(-72 * time.Hour)
	for i := range 20 {
		shadowDecision(t, store, fmt.Sprintf("busy-err-%d", i), "busy", base.Add(time.Duration(i)*time.Minute),
			&failure.Shadow{Version: cand.Version, Error: "the candidate's prediction failed: runtime error: index out of range"}, ledger.Failed)
	}
	for i := range 5 {
		shadowDecision(t, store, fmt.Sprintf("busy-ok-%d", i), "busy", now.Add(-time.Duration(10-i)*time.Hour),
			&failure.Shadow{Version: cand.Version, PSuccess: 0.9}, ledger.Succeeded)
	}
	ev, err := r.Evaluate(ctx, cand.Version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("shadow errors %d, failed %v", ev.Gates.ShadowErrors, ev.Gates.Failed)
	if ev.Gates.ShadowErrors == 0 {
		t.Errorf("the candidate's prediction failed on 20 live decisions in the window; the gates saw none")
	}
}

// TestShadowReportCacheUnderConcurrentUse: the report cache under concurrent readers, Evaluate
// and promotions (run with -race).
func TestShadowReportCacheUnderConcurrentUse(t *testing.T) {
	ctx := context.Background()
	r, store, cand := withCandidate(t, Gates{MinOutcomes: 1})
	fillShadowed(t, store, plan(20), func(bool) *failure.Shadow { return &failure.Shadow{Version: cand.Version, PSuccess: 0.5} })
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 20 {
				_, _ = r.ShadowReport(ctx, cand.Version)
				_, _ = r.Evaluate(ctx, cand.Version)
			}
		}()
	}
	go func() {
		defer func() { done <- struct{}{} }()
		for i := range 5 {
			_, _, _ = r.Promote(ctx, cand.Version, Promotion{Actor: "ada", Force: true, Reason: "t"})
			_, _, _ = r.Rollback(ctx, 1, Promotion{Actor: "ada", Reason: fmt.Sprint("r", i)})
		}
	}()
	for range 5 {
		<-done
	}
}

package autonomy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// autoFix records one fix of kind k applied on its own, by grant (its seq, as the
// intake records policy.Decision.Grant) or by the rules (grant 0), ending in end.
func (f *fixtures) autoFix(k ledger.Kind, at time.Time, grant int64, end ledger.State) {
	t := f.t
	t.Helper()
	f.n++
	id := fmt.Sprintf("ev-%d", f.n)
	ns, tmpl, _ := strings.Cut(k.Template, "/")
	ev := &failure.Event{ID: id, Time: at, Source: "watcher", Job: failure.Job{Namespace: ns, Name: fmt.Sprintf("%s-%d", tmpl, f.n),
		Template: tmpl, Kind: k.JobKind, Attempt: 1, Resources: failure.Resources{MemoryBytes: 8 << 30}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}}
	opt := failure.Option{Resources: failure.Resources{MemoryBytes: 12 << 30}, CostMultiple: 1.5, PSuccess: 0.9}
	rec := &failure.Recommendation{EventID: id, Classification: failure.Classification{Category: k.Category, Confidence: 0.9, Retryable: true},
		Retry: true, Options: []failure.Option{opt}, Chosen: 0}
	reason := "policy rule resource-fixes"
	if grant != 0 {
		reason = "autonomy granted to " + k.String() + " by alice on 2026-12-05 (the rules alone: no policy rule matched)"
	}
	ctx := context.Background()
	if _, err := f.store.Record(ctx, []ledger.Entry{{EventID: id, ReceivedAt: at, Event: ev, ChainID: ns + "/" + ev.Job.Name,
		Recommendation: rec, State: ledger.Approved, Actor: "policy", Reason: reason, Grant: grant,
		Attempt: &ledger.Attempt{Number: 2, JobName: failure.AttemptName(ev.Job.Name, 2), Resources: opt.Resources}}}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Transition(ctx, id, ledger.Approved, ledger.Submitted, "dispatcher", "", at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Finish(ctx, id, end, failure.Outcome{}, "watcher", "", at.Add(time.Duration(f.n)*time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// TestRevertWatchesTheGrantsFixes checks that the automatic revocation judges a
// grant by the fixes it applied, not by every automatic fix of its kind: the rules
// apply some of the kind's fixes anyway (the default policy's resource-fixes:
// oom_memory at most 2x), and the grant only adds those the rules would review.
// Here every one of the 10 fixes the grant applied failed, interleaved with 20 the
// rules applied that succeeded: counted together, the latest 10 hold 3-4
// failures, never 5, and the grant would never be revoked.
func TestRevertWatchesTheGrantsFixes(t *testing.T) {
	f := newFixtures(t)
	k := ledger.Kind{Category: failure.OOMMemory, Template: trainer, JobKind: failure.Training}
	f.reviewed(k.Category, k.Template, now.Add(-48*time.Hour), 10, 0, 0)
	s := newService(f, policy.DefaultAutonomy())
	ctx := context.Background()
	g := f.grant(k, "alice", now.Add(-24*time.Hour))
	after := now.Add(-23 * time.Hour)
	for range 10 {
		f.autoFix(k, after, 0, ledger.Succeeded)
		f.autoFix(k, after, 0, ledger.Succeeded)
		f.autoFix(k, after, g.Seq, ledger.Failed)
	}
	revoked, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 1 {
		t.Errorf("10 of 10 fixes applied by the grant failed; Check revoked %d grants", len(revoked))
	}
}

// TestEditedApprovalsDoNotEarnAutonomy checks that an approval after the reviewer
// replaced the recommended configuration (review.Approve's edits, or another
// option) is not an approval of the kind's fixes, nor its attempt's success the
// kind's: a granted kind applies the unedited recommendation on its own. Here
// every one of 10 reviews replaced the recommended configuration, and every edited
// attempt succeeded: the kind must not be proposed.
func TestEditedApprovalsDoNotEarnAutonomy(t *testing.T) {
	f := newFixtures(t)
	k := ledger.Kind{Category: failure.OOMMemory, Template: trainer, JobKind: failure.Training}
	ctx := context.Background()
	at := now.Add(-24 * time.Hour)
	for range 10 {
		f.n++
		id := fmt.Sprintf("ev-%d", f.n)
		ev := &failure.Event{ID: id, Time: at, Source: "watcher", Job: failure.Job{Namespace: "team-a", Name: fmt.Sprintf("trainer-%d", f.n),
			Template: "trainer", Kind: failure.Training, Attempt: 1, Resources: failure.Resources{MemoryBytes: 8 << 30}},
			Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}}
		opt := failure.Option{Resources: failure.Resources{MemoryBytes: 9 << 30}, CostMultiple: 1.1, PSuccess: 0.9}
		rec := &failure.Recommendation{EventID: id, Classification: failure.Classification{Category: k.Category, Confidence: 0.9, Retryable: true},
			Retry: true, Options: []failure.Option{opt}, Chosen: 0}
		if _, err := f.store.Record(ctx, []ledger.Entry{{EventID: id, ReceivedAt: at, Event: ev, ChainID: "team-a/" + ev.Job.Name,
			Recommendation: rec, State: ledger.PendingReview, Actor: "policy"}}); err != nil {
			t.Fatal(err)
		}
		edited := opt
		edited.Resources.MemoryBytes = 32 << 30
		if err := f.store.Approve(ctx, id, ledger.Attempt{Number: 2, JobName: failure.AttemptName(ev.Job.Name, 2), Resources: edited.Resources,
			Option: &edited}, "alice", "approved the chosen option 0, edited: memory=32Gi", at); err != nil {
			t.Fatal(err)
		}
		if err := f.store.Transition(ctx, id, ledger.Approved, ledger.Submitted, "dispatcher", "", at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := f.store.Finish(ctx, id, ledger.Succeeded, failure.Outcome{}, "watcher", "", at.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	s := newService(f, policy.DefaultAutonomy())
	l, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range l.Kinds {
		if a.Kind != k {
			continue
		}
		found = true
		if a.Proposed {
			t.Errorf("%s proposed on 10 approvals that each replaced its recommendation (approved %d, reviewed outcomes %+v)", k,
				a.Approved, a.Reviewed)
		}
		if a.Edited != 10 || a.Approved != 0 || a.Reviewed.Total() != 0 {
			t.Errorf("%s: approved %d, edited %d, reviewed outcomes %+v; want 0, 10 and none", k, a.Approved, a.Edited, a.Reviewed)
		}
	}
	if !found {
		t.Errorf("%s is not listed: %+v", k, l.Kinds)
	}
}

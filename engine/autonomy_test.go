package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/autonomy"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// teamOOM is a sure out-of-memory failure of a Job of template in team-a.
func teamOOM(id, template string, n int) *failure.Event {
	return &failure.Event{ID: id, Job: failure.Job{Namespace: "team-a", Name: fmt.Sprintf("%s-%d", template, n), Template: template,
		Kind: failure.Training, Attempt: 1, Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 1200, Usage: failure.Usage{PeakMemoryBytes: 8 << 30}}}
}

// TestAGrantedKindAppliesOnItsOwnUntilItFails: team-a's fixes are reviewed by a
// rule; once an admin grants oom_memory on team-a/trainer, that kind's fixes apply
// on their own, with the grant as the reason, while another template's, and the
// template's batch Jobs', are still reviewed; when five of the fixes the grant
// applied have failed, the leader's check revokes the grant and the next failure
// of the kind goes to review.
func TestAGrantedKindAppliesOnItsOwnUntilItFails(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		pol.Rules = append([]policy.Rule{{Name: "team-a-reviewed", Namespaces: []string{"team-a"}, Verdict: policy.Review}}, pol.Rules...)
		svc := autonomy.New(autonomy.Options{Ledger: store, Thresholds: &pol.Autonomy})
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol, Grants: svc.Grants()}
		off := int64(0)
		next := func(template string) ledger.Remediation {
			off++
			return handle(t, in, teamOOM(fmt.Sprintf("ev-%d", off), template, int(off)), off)
		}
		if r := next("trainer"); r.State != ledger.PendingReview {
			t.Fatalf("before the grant: %s (%s), want pending_review", r.State, r.Reason)
		}
		kind := ledger.Kind{Category: failure.OOMMemory, Template: "team-a/trainer", JobKind: failure.Training}
		if _, err := svc.Grant(ctx, kind, "alice", "the team's on-call asked", true); err != nil {
			t.Fatal(err)
		}
		var auto []ledger.Remediation
		for range 5 {
			r := next("trainer")
			if r.State != ledger.Approved || !strings.HasPrefix(r.Reason, "autonomy granted to oom_memory on team-a/trainer (training) by alice on ") {
				t.Fatalf("granted: %s (%s), want approved by the grant", r.State, r.Reason)
			}
			auto = append(auto, r)
		}
		// A JobSet of the template is another workload, and another kind: the Jobs'
		// grant does not apply to it; one of its own does.
		in.Workload = func(id string) string {
			if strings.HasPrefix(id, "k8s-jobset-") {
				return "JobSet"
			}
			return "Job"
		}
		jobSet := func() ledger.Remediation {
			off++
			return handle(t, in, teamOOM(fmt.Sprintf("k8s-jobset-%d", off), "trainer", int(off)), off)
		}
		if r := jobSet(); r.State != ledger.PendingReview {
			t.Errorf("a JobSet of the kind granted for Jobs: %s (%s), want pending_review", r.State, r.Reason)
		}
		if r := next("trainer"); r.State != ledger.Approved {
			t.Errorf("a Job of the granted kind, its workload named: %s (%s), want approved by the grant", r.State, r.Reason)
		}
		sets := kind
		sets.Workload = "JobSet"
		if _, err := svc.Grant(ctx, sets, "alice", "the JobSets' record", true); err != nil {
			t.Fatal(err)
		}
		if r := jobSet(); r.State != ledger.Approved || !strings.Contains(r.Reason, "(training, JobSet) by alice") {
			t.Errorf("a JobSet of the kind granted for JobSets: %s (%s), want approved by that grant", r.State, r.Reason)
		}
		in.Workload = nil
		if r := next("evaluator"); r.State != ledger.PendingReview {
			t.Errorf("another template: %s (%s), want pending_review", r.State, r.Reason)
		}
		off++
		batch := teamOOM(fmt.Sprintf("ev-%d", off), "trainer", int(off))
		batch.Job.Kind = failure.Batch
		if r := handle(t, in, batch, off); r.State != ledger.PendingReview {
			t.Errorf("a batch Job of the template granted for training: %s (%s), want pending_review", r.State, r.Reason)
		}
		for i, r := range auto {
			at := time.Now()
			if err := store.Transition(ctx, r.EventID, ledger.Approved, ledger.Submitted, ActorDispatcher, "", at); err != nil {
				t.Fatal(err)
			}
			if err := store.Finish(ctx, r.EventID, ledger.Failed, failure.Outcome{}, "watcher", "", at); err != nil {
				t.Fatal(err)
			}
			revoked, err := svc.Check(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := i == len(auto)-1; (len(revoked) == 1) != want {
				t.Fatalf("Check after %d automatic failures revoked %d grants, want revoked=%v", i+1, len(revoked), want)
			}
		}
		if r := next("trainer"); r.State != ledger.PendingReview || !strings.Contains(r.Reason, "team-a-reviewed") {
			t.Errorf("after the revocation: %s (%s), want pending_review by the rule", r.State, r.Reason)
		}
	})
}

// TestMachineActorsNameTheEngine: the ledger counts no decision of the engine's
// actors as a person's.
func TestMachineActorsNameTheEngine(t *testing.T) {
	for _, a := range []string{ActorPolicy, ActorDispatcher, ActorVerifier, "intake", autonomy.Actor} {
		if !slices.Contains(ledger.MachineActors, a) {
			t.Errorf("ledger.MachineActors = %q, want %q among them", ledger.MachineActors, a)
		}
	}
}

package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// fakeVerifier bears out the events whose ids it knows, describing their jobs as
// the cluster would; others it refuses, or, in unknown, cannot tell.
type fakeVerifier struct {
	jobs    map[string]failure.Job // by event id
	remedy  map[string]string      // event id -> remediation annotation
	unknown map[string]bool
}

func (f fakeVerifier) Verify(_ context.Context, ev *failure.Event) (Verified, error) {
	if f.unknown[ev.ID] {
		return Verified{}, errors.New("the API server is unavailable")
	}
	j, ok := f.jobs[ev.ID]
	if !ok {
		return Verified{}, fmt.Errorf("no Job %s/%s with uid %s exists: %w", ev.Job.Namespace, ev.Job.Name, ev.Job.UID, ErrUnverified)
	}
	return Verified{Job: j, Remediation: f.remedy[ev.ID]}, nil
}

func oomOf(id, ns, name string, mem int64, labels map[string]string, attempt int) *failure.Event {
	return &failure.Event{ID: id, Job: failure.Job{Namespace: ns, Name: name, UID: "uid-" + id, Kind: failure.Batch, Attempt: attempt,
		Resources: failure.Resources{CPUMillis: 2000, MemoryBytes: mem}, Labels: labels},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}}
}

// TestChainsComeFromTheLedger: a chain id and attempt number in a Job's labels or
// the event do not place it in another's chain. Before, an event labelled with a
// victim's chain and attempt 99 exhausted the victim's budget for good.
func TestChainsComeFromTheLedger(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		in := &Intake{Ledger: store, Recommender: newRecommender(t), Policy: &pol}
		victim := handle(t, in, oomOf("v1", "ml", "victim", 8<<30, nil, 1), 1)
		if victim.State != ledger.Approved || victim.Attempts[0].JobName != "victim-af2" {
			t.Fatalf("victim: %s %+v, want approved attempt victim-af2", victim.State, victim.Attempts)
		}
		forged := handle(t, in, oomOf("f1", "ml", "evil", 8<<30, map[string]string{LabelChain: "ml/victim", LabelOriginal: "victim"}, 99), 2)
		if forged.ChainID != "ml/evil" || forged.Attempt != 1 {
			t.Errorf("labelled event: chain %s attempt %d, want its own chain ml/evil, attempt 1", forged.ChainID, forged.Attempt)
		}
		if a, _ := OwnAttempt(&forged); a.JobName != "evil-af2" {
			t.Errorf("labelled event's attempt is %s, want evil-af2", a.JobName)
		}
		runs, err := store.ChainAttempts(ctx, []string{"ml/victim"})
		if err != nil || runs["ml/victim"] != 2 {
			t.Errorf("victim's chain has %d runs (%v), want 2: the labels reached it", runs["ml/victim"], err)
		}
		// The victim's real retry fails: it continues the victim's chain, as attempt 2,
		// whatever it claims.
		retry := handle(t, in, oomOf("v2", "ml", "victim-af2", victim.Attempts[0].Resources.MemoryBytes, nil, 77), 3)
		if retry.ChainID != "ml/victim" || retry.Attempt != 2 {
			t.Errorf("the retry: chain %s attempt %d, want ml/victim attempt 2", retry.ChainID, retry.Attempt)
		}
		if a, _ := OwnAttempt(&retry); a.Number != 3 || a.JobName != "victim-af3" {
			t.Errorf("the retry's fix: %+v, want attempt 3, victim-af3", a)
		}
		// The same name in another namespace is another Job, and its own chain.
		other := handle(t, in, oomOf("o1", "team-b", "victim-af2", 8<<30, nil, 1), 4)
		if other.ChainID != "team-b/victim-af2" || other.State != ledger.Approved {
			t.Errorf("team-b's victim-af2: chain %s, %s; want a chain of its own, approved", other.ChainID, other.State)
		}
	})
}

// TestUnverifiedEventsAreRejected: what the cluster does not bear out is recorded
// rejected, with the reason, is not recommended for, joins no history and no chain;
// what it bears out is decided on the cluster's description of the job, not the
// event's.
func TestUnverifiedEventsAreRejected(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		real := oomOf("real", "ml", "train", 1<<30, nil, 1)
		onCluster := real.Job
		onCluster.Resources.MemoryBytes = 64 << 30 // the event lies about the job's size
		v := fakeVerifier{jobs: map[string]failure.Job{"real": onCluster}, unknown: map[string]bool{"later": true}}
		in := &Intake{Ledger: store, Recommender: newRecommender(t), Policy: &pol, Verifier: v}
		forged := handle(t, in, oomOf("forged", "ml", "train", 8<<30, nil, 5), 1)
		if forged.State != ledger.Rejected || !strings.Contains(forged.Reason, "not verified on the cluster") || forged.Recommendation != nil {
			t.Errorf("forged: %s (%q), recommendation %v; want rejected as unverified, not recommended for", forged.State, forged.Reason, forged.Recommendation)
		}
		if last := forged.Audit[len(forged.Audit)-1]; last.Actor != ActorVerifier {
			t.Errorf("forged: decided by %s, want %s", last.Actor, ActorVerifier)
		}
		hist, err := store.History(ctx, []string{"ml/train"}, 0)
		if err != nil || len(hist["ml/train"]) != 0 {
			t.Errorf("history of ml/train = %+v (%v): the forged failure joined it", hist["ml/train"], err)
		}
		r := handle(t, in, real, 2)
		if r.State != ledger.Approved {
			t.Fatalf("real: %s (%s), want approved", r.State, r.Reason)
		}
		if a, _ := OwnAttempt(&r); a.Resources.MemoryBytes <= 64<<30 {
			t.Errorf("real: the fix asks for %s; want more than the 64Gi the cluster says the job had", failure.FormatBytes(a.Resources.MemoryBytes))
		}
		// The cluster cannot be asked: decided as usual (the remediator checks again).
		if later := handle(t, in, oomOf("later", "ml", "etl", 8<<30, nil, 1), 3); later.State != ledger.Approved {
			t.Errorf("unverifiable now: %s (%s), want decided as usual", later.State, later.Reason)
		}
	})
}

// scripted answers each submission with the next error of its job's script.
type scripted struct {
	errs map[string][]error
	got  []string
}

func (s *scripted) Submit(_ context.Context, r *ledger.Remediation) error {
	a, _ := OwnAttempt(r)
	if q := s.errs[a.JobName]; len(q) > 0 {
		s.errs[a.JobName] = q[1:]
		return q[0]
	}
	s.got = append(s.got, a.JobName)
	return nil
}

// TestDispatcherEndsWhatCannotSucceed: a fix the cluster does not bear out is
// rejected, one a retry cannot mend abandoned at once, one that keeps failing
// abandoned after MaxSubmitFailures; rate-limit tokens go to submissions that
// happened only. Before, a 403 or 422 was retried forever, each try taking a token.
func TestDispatcherEndsWhatCannotSucceed(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		in := &Intake{Ledger: store, Recommender: newRecommender(t), Policy: &pol}
		for i, name := range []string{"gone", "forbidden", "flaky", "fine"} {
			if r := handle(t, in, oomOf(name, "ml", name, 4<<30, nil, 1), int64(i)); r.State != ledger.Approved {
				t.Fatalf("%s: %s, want approved", name, r.State)
			}
		}
		transient := errors.New("connection refused")
		rem := &scripted{errs: map[string][]error{
			"gone-af2":      {fmt.Errorf("no Job ml/gone with uid x: %w", ErrUnverified)},
			"forbidden-af2": {fmt.Errorf("jobs is forbidden: %w", ErrCannotSubmit)},
			"flaky-af2":     {transient, transient, transient, transient},
		}}
		now := time.Unix(1000, 0)
		lim := policy.NewLimiter(0.001, 2) // two tokens, hardly refilled
		d := &Dispatcher{Ledger: store, Remediator: rem, Limiter: lim, MaxSubmitFailures: 3, Now: func() time.Time { return now }}
		for range 6 {
			if _, err := d.Once(ctx); err != nil {
				t.Fatal(err)
			}
			now = now.Add(time.Minute)
		}
		want := map[string]ledger.State{"gone": ledger.Rejected, "forbidden": ledger.Abandoned, "flaky": ledger.Abandoned, "fine": ledger.Submitted}
		for id, st := range want {
			r, err := store.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if r.State != st {
				t.Errorf("%s: %s, want %s (audit %+v)", id, r.State, st, r.Audit[len(r.Audit)-1])
			}
		}
		if r, _ := store.Get(ctx, "flaky"); !strings.Contains(r.Audit[len(r.Audit)-1].Detail, "gave up after 3 failed submissions") {
			t.Errorf("flaky's last audit row: %+v", r.Audit[len(r.Audit)-1])
		}
		// Only one submission happened: with a fresh bucket of 2, one token is left.
		if ok, _ := lim.Available(now); !ok {
			t.Error("the limiter is empty: tokens were spent on submissions that did not happen")
		}
	})
}

// TestApproverOptionWhole: the attempt runs with the whole option an approver
// picks. Before, its resources came from the pick and its deadline, nodes to avoid
// and delay from the policy's choice.
func TestApproverOptionWhole(t *testing.T) {
	rec := &failure.Recommendation{Retry: true, Chosen: 0, Options: []failure.Option{
		{Resources: failure.Resources{MemoryBytes: 8 << 30}, DeadlineSeconds: 100, DelaySeconds: 60, AvoidNodes: []string{"n1"}},
		{Resources: failure.Resources{MemoryBytes: 16 << 30}, DeadlineSeconds: 900},
	}}
	picked := rec.Options[1]
	r := &ledger.Remediation{EventID: "e", Recommendation: rec, ReceivedAt: time.Unix(0, 0),
		Attempts: []ledger.Attempt{{EventID: "e", Resources: picked.Resources, Option: &picked}}}
	opt, ok := AttemptOption(r)
	if !ok || opt.DeadlineSeconds != 900 || opt.DelaySeconds != 0 || len(opt.AvoidNodes) != 0 {
		t.Errorf("AttemptOption = %+v, want option 1 whole", opt)
	}
	if due := dueAt(r); !due.IsZero() {
		t.Errorf("dueAt = %v, want no delay (option 1 has none)", due)
	}
}

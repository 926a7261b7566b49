package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
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
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol}
		victim := handle(t, in, oomOf("v1", "ml", "victim", 8<<30, nil, 1), 1)
		if victim.State != ledger.Approved || victim.Attempts[0].JobName != "victim-af2" {
			t.Fatalf("victim: %s %+v, want approved attempt victim-af2", victim.State, victim.Attempts)
		}
		forged := handle(t, in, oomOf("f1", "ml", "evil", 8<<30, map[string]string{failure.AnnotationChain: "ml/victim", failure.LabelOriginal: "victim"}, 99), 2)
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

// handleAt runs ev through in as the message at offset off and returns Handle's
// rejections and error.
func handleAt(t *testing.T, in *Intake, ev *failure.Event, off int64) (*ingest.Message, []ingest.Rejection, error) {
	t.Helper()
	m := &ingest.Message{Topic: "f", Offset: off, Value: mustJSON(t, ev), Time: time.Now()}
	rej, err := in.Handle(context.Background(), []ingest.Message{*m})
	return m, rej, err
}

// TestUnverifiedEventsAreRejected: what the cluster does not bear out is recorded
// rejected (under its position), with the reason, is not recommended for, joins no
// history and no chain; what it bears out is decided on the cluster's description
// of the job, not the event's.
func TestUnverifiedEventsAreRejected(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		real := oomOf("real", "ml", "train", 1<<30, nil, 1)
		onCluster := real.Job
		onCluster.Resources.MemoryBytes = 64 << 30 // the event lies about the job's size
		v := fakeVerifier{jobs: map[string]failure.Job{"real": onCluster}}
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol, Verifier: v}
		m, rej, err := handleAt(t, in, oomOf("forged", "ml", "train", 8<<30, nil, 5), 1)
		if err != nil || len(rej) != 0 {
			t.Fatalf("Handle(forged) = %v, %v", rej, err)
		}
		forged, err := store.Get(ctx, RejectedID(m))
		if err != nil {
			t.Fatal(err)
		}
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
	})
}

// TestEarlyForgeryDoesNotBlockTheRealFailure: a forged event that takes a real
// failure's id before it happens is rejected without taking the id. Before, the
// real event that followed was dropped as a duplicate of the forgery.
func TestEarlyForgeryDoesNotBlockTheRealFailure(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		v := fakeVerifier{jobs: map[string]failure.Job{}}
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol, Verifier: v}
		ev := oomOf("k8s-job-u1", "ml", "train", 8<<30, nil, 1)
		if _, _, err := handleAt(t, in, ev, 1); err != nil { // the Job has not failed yet
			t.Fatal(err)
		}
		v.jobs["k8s-job-u1"] = ev.Job // now it has
		if r := handle(t, in, ev, 2); r.State != ledger.Approved {
			t.Errorf("the real failure after a forgery of its id: %s (%s), want decided and approved", r.State, r.Reason)
		}
	})
}

// TestUnverifiableEventsWait: an event the cluster cannot be asked about is not
// decided — no attempt, no history, no chain — but waits for the batch's next
// delivery; the rest of its batch is recorded. After VerifyPatience it is rejected.
// Before, it was decided from its own description, and a flood or one malformed
// name made events pass unverified.
func TestUnverifiableEventsWait(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		now := time.Unix(1000, 0)
		good := oomOf("good", "ml", "good", 8<<30, nil, 1)
		v := fakeVerifier{jobs: map[string]failure.Job{"good": good.Job}, unknown: map[string]bool{"later": true}}
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol, Verifier: v, VerifyPatience: time.Hour,
			Now: func() time.Time { return now }}
		later := oomOf("later", "ml", "etl", 400<<30, nil, 1)
		batch := []ingest.Message{{Topic: "f", Offset: 1, Value: mustJSON(t, good)}, {Topic: "f", Offset: 2, Value: mustJSON(t, later)}}
		if _, err := in.Handle(ctx, batch); !errors.Is(err, ingest.ErrNotYet) {
			t.Fatalf("Handle with an unverifiable event = %v, want ErrNotYet", err)
		}
		if r, err := store.Get(ctx, "good"); err != nil || r.State != ledger.Approved {
			t.Errorf("good: %v, %v; want recorded and approved while its neighbour waits", r.State, err)
		}
		if _, err := store.Get(ctx, "later"); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("later was recorded (%v) before it could be verified", err)
		}
		hist, _ := store.History(ctx, []string{"ml/etl"}, 0)
		runs, _ := store.ChainAttempts(ctx, []string{"ml/etl"})
		if len(hist["ml/etl"]) != 0 || runs["ml/etl"] != 0 {
			t.Errorf("the unverified event reached the history (%d) or the chain (%d)", len(hist["ml/etl"]), runs["ml/etl"])
		}
		now = now.Add(2 * time.Hour)
		if _, err := in.Handle(ctx, batch); err != nil {
			t.Fatalf("Handle after the patience = %v", err)
		}
		r, err := store.Get(ctx, RejectedID(&batch[1]))
		if err != nil || r.State != ledger.Rejected || !strings.Contains(r.Reason, "could not be verified") {
			t.Errorf("later after the patience: %+v, %v; want rejected as not verifiable", r.State, err)
		}
	})
}

// failingLookup is a ledger whose AttemptsByJob fails, as a database refusing a
// value would, whenever it is asked about one job name.
type failingLookup struct {
	*ledger.Store
	name string
}

func (l failingLookup) AttemptsByJob(ctx context.Context, jobs []ledger.JobKey) (map[ledger.JobKey]ledger.Attempt, error) {
	for _, j := range jobs {
		if j.Name == l.name {
			return nil, errors.New("ERROR: invalid byte sequence (SQLSTATE 22021)")
		}
	}
	return l.Store.AttemptsByJob(ctx, jobs)
}

// TestAFailingStageIsNarrowedDown: a deterministic failure before recording (a
// lookup the ledger refuses for one message) quarantines that message, not the
// batch. Before, such a failure was handed again forever.
func TestAFailingStageIsNarrowedDown(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		in := &Intake{Ledger: failingLookup{store, "poison"}, Recommender: sharedRecommender(t), Policy: &pol}
		var batch []ingest.Message
		for i := range 1000 { // a full batch, and one lookup of a thousand jobs
			name := fmt.Sprintf("job-%d", i)
			if i == 617 {
				name = "poison"
			}
			batch = append(batch, ingest.Message{Topic: "f", Offset: int64(i), Value: mustJSON(t, oomOf(fmt.Sprintf("e%d", i), "ml", name, 8<<30, nil, 1))})
		}
		rej, err := in.Handle(context.Background(), batch)
		if err != nil {
			t.Fatalf("Handle = %v", err)
		}
		if len(rej) != 1 || rej[0].Index != 617 || !strings.Contains(rej[0].Reason, "SQLSTATE 22021") {
			t.Errorf("rejections %+v, want message 617 alone, with the reason", rej)
		}
		counts, err := store.Counts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, n := range counts {
			total += n
		}
		if total != 1000 {
			t.Errorf("%d messages recorded, want all 1000 (999 decided, 1 quarantined)", total)
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
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol}
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

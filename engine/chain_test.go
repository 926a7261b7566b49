package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// handle runs one event through Intake as if it came from Kafka at offset off.
func handle(t *testing.T, in *Intake, ev *failure.Event, off int64) ledger.Remediation {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	rej, err := in.Handle(context.Background(), []ingest.Message{{Topic: "f", Offset: off, Value: data, Time: time.Now()}})
	if err != nil || len(rej) != 0 {
		t.Fatalf("Handle(%s) = %v, %v", ev.ID, rej, err)
	}
	getter := in.Ledger.(interface {
		Get(context.Context, string) (ledger.Remediation, error)
	})
	r, err := getter.Get(context.Background(), ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// retryEvent is the failure of the attempt r asked for, as the watcher would report it.
func retryEvent(r ledger.Remediation, id, reason string, exit int, log string) *failure.Event {
	a := r.Attempts[len(r.Attempts)-1]
	ev := *r.Event
	ev.ID = id
	ev.Job.Name, ev.Job.Attempt, ev.Job.Resources = a.JobName, a.Number, a.Resources
	ev.Job.Labels = map[string]string{failure.AnnotationChain: r.ChainID, failure.LabelOriginal: r.Event.Job.Name}
	ev.Failure = failure.Signals{Reason: reason, ExitCode: exit, LogTail: log, DurationSeconds: 900, Node: "node-2"}
	if reason == "OOMKilled" {
		ev.Failure.Usage.PeakMemoryBytes = a.Resources.MemoryBytes
	}
	return &ev
}

// TestMemoryEscalationSurvivesPreemption: OOM, then a preemption of the bigger retry,
// then an OOM again — the third retry must ask for more than the second, not start
// over from the original size, and the attempts must number 2, 3, 4 in one chain.
func TestMemoryEscalationSurvivesPreemption(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol}
		ev := &failure.Event{ID: "oom-1", Job: failure.Job{Namespace: "ml", Name: "etl-42", Template: "etl", Kind: failure.Batch, Attempt: 1,
			Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30}},
			Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 1200, Usage: failure.Usage{PeakMemoryBytes: 8 << 30}}}
		r1 := handle(t, in, ev, 1)
		if r1.State != ledger.Approved || r1.Attempts[0].Number != 2 {
			t.Fatalf("first OOM: %s %+v (%s), want approved attempt 2", r1.State, r1.Attempts, r1.Reason)
		}
		m2 := r1.Attempts[0].Resources.MemoryBytes
		r2 := handle(t, in, retryEvent(r1, "preempt-2", "DisruptionTarget", 143, "Pod was preempted by a higher priority pod"), 2)
		if r2.State != ledger.Approved || r2.Attempts[len(r2.Attempts)-1].Number != 3 || r2.ChainID != r1.ChainID {
			t.Fatalf("preemption: %s %+v chain %s, want approved attempt 3 in chain %s", r2.State, r2.Attempts, r2.ChainID, r1.ChainID)
		}
		m3 := r2.Attempts[len(r2.Attempts)-1].Resources.MemoryBytes
		if m3 < m2 {
			t.Fatalf("after the preemption the retry asks for %s, less than the %s that was running", failure.FormatBytes(m3), failure.FormatBytes(m2))
		}
		r3 := handle(t, in, retryEvent(r2, "oom-3", "OOMKilled", 137, ""), 3)
		if r3.State != ledger.Approved {
			t.Fatalf("second OOM: %s (%s), want approved", r3.State, r3.Reason)
		}
		a4 := r3.Attempts[len(r3.Attempts)-1]
		if a4.Number != 4 || a4.Resources.MemoryBytes <= m3 {
			t.Errorf("second OOM: attempt %d with %s, want attempt 4 with more than %s", a4.Number,
				failure.FormatBytes(a4.Resources.MemoryBytes), failure.FormatBytes(m3))
		}
		if len(r3.Attempts) != 3 {
			t.Errorf("the chain holds %d attempts, want 3 (2, 3, 4)", len(r3.Attempts))
		}
	})
}

func TestAttemptBudget(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		pol.MaxAttempts = 2
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol}
		ev := &failure.Event{ID: "b-1", Job: failure.Job{Namespace: "ml", Name: "job", Attempt: 1, Resources: failure.Resources{MemoryBytes: 4 << 30}},
			Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}}
		r1 := handle(t, in, ev, 1)
		if r1.State != ledger.Approved {
			t.Fatalf("first failure: %s (%s), want approved", r1.State, r1.Reason)
		}
		r2 := handle(t, in, retryEvent(r1, "b-2", "OOMKilled", 137, ""), 2)
		if r2.State != ledger.Rejected {
			t.Errorf("failure of the last allowed run: %s (%s), want rejected by the budget", r2.State, r2.Reason)
		}
	})
}

// flaky fails its first n submissions of one job.
type flaky struct {
	failJob string
	n       int
	got     []string
}

func (f *flaky) Submit(_ context.Context, r *ledger.Remediation) error {
	a, _ := OwnAttempt(r)
	if a.JobName == f.failJob && f.n > 0 {
		f.n--
		return errors.New("cluster unreachable")
	}
	f.got = append(f.got, a.JobName)
	return nil
}

func TestDispatcher(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol}
		for i := range 3 {
			ev := &failure.Event{ID: fmt.Sprintf("d-%d", i), Job: failure.Job{Namespace: "ml", Name: fmt.Sprintf("job-%d", i),
				Resources: failure.Resources{MemoryBytes: 4 << 30}},
				Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}}
			if r := handle(t, in, ev, int64(i)); r.State != ledger.Approved {
				t.Fatalf("%s: %s, want approved", ev.ID, r.State)
			}
		}
		now := time.Unix(1000, 0)
		rem := &flaky{failJob: "job-0-af2", n: 2}
		d := &Dispatcher{Ledger: store, Remediator: rem, Now: func() time.Time { return now }}

		if err := store.SetPaused(ctx, true, "oncall", "incident", now); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Once(ctx); err != nil || len(rem.got) != 0 {
			t.Fatalf("paused: submitted %v (err %v), want nothing", rem.got, err)
		}
		if err := store.SetPaused(ctx, false, "oncall", "over", now); err != nil {
			t.Fatal(err)
		}
		// job-0 fails: the others go on, and job-0 waits for its backoff.
		if _, err := d.Once(ctx); err != nil {
			t.Fatal(err)
		}
		if len(rem.got) != 2 {
			t.Fatalf("submitted %v, want the two healthy ones despite job-0 failing", rem.got)
		}
		if _, err := d.Once(ctx); err != nil || len(rem.got) != 2 {
			t.Fatalf("retried job-0 before its backoff: %v", rem.got)
		}
		for range 2 { // fails once more, then succeeds
			now = now.Add(time.Minute)
			if _, err := d.Once(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if len(rem.got) != 3 || rem.got[2] != "job-0-af2" {
			t.Fatalf("submitted %v, want job-0-af2 last", rem.got)
		}
		counts, err := store.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if counts[ledger.Submitted] != 3 || counts[ledger.Approved] != 0 {
			t.Errorf("counts = %v, want 3 submitted", counts)
		}
	})
}

func TestDryRunActsOnNothing(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		pol.DryRun = true
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol}
		ev := &failure.Event{ID: "dry", Job: failure.Job{Namespace: "ml", Name: "job", Resources: failure.Resources{MemoryBytes: 4 << 30}},
			Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}}
		handle(t, in, ev, 0)
		rem := &flaky{}
		d := &Dispatcher{Ledger: store, Remediator: rem, DryRun: true}
		if _, err := d.Once(ctx); err != nil {
			t.Fatal(err)
		}
		r, err := store.Get(ctx, "dry")
		if err != nil {
			t.Fatal(err)
		}
		if len(rem.got) != 0 || r.State != ledger.Abandoned {
			t.Errorf("dry run: submitted %v, state %s; want nothing submitted and the decision kept as abandoned", rem.got, r.State)
		}
	})
}

// TestTwoDispatchersSubmitOnce: two replicas' dispatchers share the ledger and a
// cluster; every approved fix is submitted exactly once between them.
func TestTwoDispatchersSubmitOnce(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol}
		const n = 30
		for i := range n {
			ev := &failure.Event{ID: fmt.Sprintf("two-%d", i), Job: failure.Job{Namespace: "ml", Name: fmt.Sprintf("job-%d", i),
				Resources: failure.Resources{MemoryBytes: 4 << 30}},
				Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}}
			handle(t, in, ev, int64(i))
		}
		cluster := &countingCluster{jobs: map[string]int{}}
		// The dispatchers' clock stands still: a claim (30 s) cannot lapse however
		// slowly the machine runs, so one submission each is what the claims ensure.
		now := time.Now()
		var wg sync.WaitGroup
		for _, owner := range []string{"replica-a", "replica-b"} {
			d := &Dispatcher{Ledger: store, Remediator: cluster, Owner: owner, Now: func() time.Time { return now }}
			wg.Go(func() {
				for range 5 {
					if _, err := d.Once(ctx); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		cluster.mu.Lock()
		defer cluster.mu.Unlock()
		if cluster.calls != n || len(cluster.jobs) != n {
			t.Errorf("%d Submit calls for %d jobs, want %d each: a fix was submitted twice", cluster.calls, len(cluster.jobs), n)
		}
	})
}

// countingCluster counts Submit calls, as a cluster that does not dedupe would see them.
type countingCluster struct {
	mu    sync.Mutex
	calls int
	jobs  map[string]int
}

func (c *countingCluster) Submit(_ context.Context, r *ledger.Remediation) error {
	a, _ := OwnAttempt(r)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	c.jobs[a.JobName]++
	return nil
}

// panicky panics on one event, as a bug meeting an odd input would.
type panicky struct {
	Recommender
	on string
}

func (p panicky) Recommend(ev *failure.Event, h []failure.Outcome) failure.Recommendation {
	if ev.ID == p.on {
		panic("index out of range")
	}
	return p.Recommender.Recommend(ev, h)
}

// TestPoisonEventsAreRejected: an event whose decision panics, and one that claims an
// id reserved for rejected messages, are dead-lettered and recorded under their
// position; the rest of the batch is decided, and a redelivery is dead-lettered again.
func TestPoisonEventsAreRejected(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		in := &Intake{Ledger: store, Recommender: panicky{sharedRecommender(t), "boom"}, Policy: &pol}
		mk := func(id string) []byte {
			b, _ := json.Marshal(&failure.Event{ID: id, Job: failure.Job{Name: "j-" + id, Resources: failure.Resources{MemoryBytes: 1 << 30}},
				Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}})
			return b
		}
		batch := []ingest.Message{
			{Topic: "f", Partition: 0, Offset: 1, Value: mk("fine")},
			{Topic: "f", Partition: 0, Offset: 2, Value: mk("boom")},
			{Topic: "f", Partition: 0, Offset: 3, Value: mk("kafka:f/0/9")},
		}
		for round := range 2 { // the second time is a redelivery
			rej, err := in.Handle(context.Background(), batch)
			if err != nil {
				t.Fatal(err)
			}
			if len(rej) != 2 || rej[0].Index+rej[1].Index != 3 {
				t.Fatalf("round %d: rejections %+v, want messages 1 and 2", round, rej)
			}
		}
		for id, want := range map[string]string{RejectedID(&batch[1]): "internal: the decision failed", RejectedID(&batch[2]): "reserved"} {
			r, err := store.Get(context.Background(), id)
			if err != nil || r.State != ledger.Rejected || !strings.Contains(r.Error, want) {
				t.Errorf("%s: %v %s %q; want rejected with %q", id, err, r.State, r.Error, want)
			}
		}
		if r, err := store.Get(context.Background(), "fine"); err != nil || r.State == ledger.Rejected {
			t.Errorf("the healthy event: %v %s, want it decided", err, r.State)
		}
	})
}

// TestDispatcherWaitsForTheBackoff: a fix that asks to wait (a retry after a
// preemption) is not submitted before its delay has passed, and is after.
func TestDispatcherWaitsForTheBackoff(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		t0 := time.Now()
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol, Now: func() time.Time { return t0 }}
		ev := &failure.Event{ID: "pre", Job: failure.Job{Namespace: "ml", Name: "job", Resources: failure.Resources{MemoryBytes: 4 << 30}},
			Failure: failure.Signals{Reason: "DisruptionTarget", ExitCode: 143, Message: "Pod was preempted", DurationSeconds: 600}}
		r := handle(t, in, ev, 0)
		opt, _ := r.Recommendation.ChosenOption()
		if r.State != ledger.Approved || opt.DelaySeconds <= 0 {
			t.Fatalf("preemption: %s with delay %v, want approved with a backoff", r.State, opt.DelaySeconds)
		}
		now := t0.Add(time.Second)
		rem := &flaky{}
		d := &Dispatcher{Ledger: store, Remediator: rem, Now: func() time.Time { return now }}
		for range 2 {
			if _, err := d.Once(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if len(rem.got) != 0 {
			t.Fatalf("submitted %v one second in, before the %v s backoff", rem.got, opt.DelaySeconds)
		}
		now = t0.Add(time.Duration(opt.DelaySeconds+1) * time.Second)
		if _, err := d.Once(ctx); err != nil {
			t.Fatal(err)
		}
		if len(rem.got) != 1 {
			t.Fatalf("submitted %v after the backoff, want the retry", rem.got)
		}
	})
}

// gone is a cluster where the failed job no longer exists.
type gone struct{ calls int }

func (g *gone) Submit(context.Context, *ledger.Remediation) error {
	g.calls++
	return fmt.Errorf("the failed job is gone: %w", ErrCannotSubmit)
}

// TestDispatcherAbandonsWhatCannotBeSubmitted: a remediation that can never be
// submitted is abandoned with the reason, not retried forever.
func TestDispatcherAbandonsWhatCannotBeSubmitted(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol}
		ev := &failure.Event{ID: "gone", Job: failure.Job{Namespace: "ml", Name: "job", Resources: failure.Resources{MemoryBytes: 4 << 30}},
			Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}}
		handle(t, in, ev, 0)
		g := &gone{}
		d := &Dispatcher{Ledger: store, Remediator: g}
		for range 3 {
			if _, err := d.Once(ctx); err != nil {
				t.Fatal(err)
			}
		}
		r, err := store.Get(ctx, "gone")
		if err != nil {
			t.Fatal(err)
		}
		if g.calls != 1 || r.State != ledger.Abandoned || !strings.Contains(r.Audit[len(r.Audit)-1].Detail, "is gone") {
			t.Errorf("%d submissions, state %s, last audit %+v; want one try and abandoned with the reason", g.calls, r.State, r.Audit[len(r.Audit)-1])
		}
	})
}

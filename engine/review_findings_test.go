package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// slowVerifier is fakeVerifier behind an API server that answers one request per
// `per` per worker, as client-go's rate limiter (QPS 50, burst 100 in kube.go) does:
// a call the context's deadline cuts off is "could not be asked".
type slowVerifier struct {
	fakeVerifier
	per   time.Duration
	calls map[string]*atomic.Int64
}

func (s slowVerifier) Verify(ctx context.Context, ev *failure.Event) (Verified, error) {
	if c := s.calls[ev.ID]; c != nil {
		c.Add(1)
	}
	select {
	case <-ctx.Done():
		return Verified{}, fmt.Errorf("client rate limiter Wait returned an error: %w", ctx.Err())
	case <-time.After(s.per):
	}
	return s.fakeVerifier.Verify(ctx, ev)
}

// TestForgeriesAreVerifiedOnceNotOnEveryDelivery: a batch of forged events (each
// costs the API server a GET) followed by a real failure. The forgeries rejected on
// one delivery are done — looked up by their position on the next — so each delivery
// gets further, the real failure is decided, and it is never rejected as not
// verifiable. Before, every redelivery verified all the forgeries again and the real
// failure was never reached.
//
// The API server's pace and VerifyTimeout run on synctest's clock: each delivery
// verifies 8 workers x 100 ms / 5 ms = 160 events (152 at the least, when a
// worker's last answer and the timeout fall due at once) however slow the machine.
func TestForgeriesAreVerifiedOnceNotOnEveryDelivery(t *testing.T) {
	forEachLedgerInBubble(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		now := time.Unix(1000, 0)
		real := oomOf("k8s-job-real", "ml", "train", 8<<30, nil, 1)
		v := slowVerifier{fakeVerifier: fakeVerifier{jobs: map[string]failure.Job{real.ID: real.Job}},
			per: 5 * time.Millisecond, calls: map[string]*atomic.Int64{}}
		var batch []ingest.Message
		for i := range 300 {
			id := fmt.Sprintf("k8s-job-forged-%d", i)
			v.calls[id] = &atomic.Int64{}
			batch = append(batch, ingest.Message{Topic: "f", Offset: int64(i), Value: mustJSON(t, oomOf(id, "ml", "x", 8<<30, nil, 1))})
		}
		batch = append(batch, ingest.Message{Topic: "f", Offset: 300, Value: mustJSON(t, real)})
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol, Verifier: v,
			VerifyTimeout: 100 * time.Millisecond, VerifyPatience: 15 * time.Minute, Now: func() time.Time { return now }}
		var err error
		for delivery := 1; delivery <= 6; delivery++ { // the consumer hands the same batch again
			if _, err = in.Handle(ctx, batch); err == nil {
				break
			}
			if !errors.Is(err, ingest.ErrNotYet) {
				t.Fatalf("delivery %d: %v", delivery, err)
			}
			now = now.Add(time.Second)
		}
		if c := v.calls["k8s-job-forged-0"].Load(); c > 1 {
			t.Errorf("the first forgery was verified %d times: rejected on the first delivery, it was asked about on every one", c)
		}
		if r, gerr := store.Get(ctx, real.ID); gerr != nil {
			t.Errorf("after 6 deliveries the real failure is not decided (%v; last Handle: %v)", gerr, err)
		} else if r.State == ledger.Rejected {
			t.Errorf("the real failure was rejected: %s", r.Reason)
		}
		// What follows: the patience runs out and the real failure is rejected.
		now = now.Add(16 * time.Minute)
		for range 5 {
			if _, err := in.Handle(ctx, batch); err == nil {
				break
			}
			now = now.Add(16 * time.Minute)
		}
		if r, gerr := store.Get(ctx, RejectedID(&batch[300])); gerr == nil && strings.Contains(r.Reason, "could not be verified") {
			t.Errorf("the real failure (which the cluster bears out) was rejected: %s", r.Reason)
		}
	})
}

// TestForgeryInTheSameBatchDropsTheRealFailure: a forgery carrying a real
// failure's id ahead of it in one batch is recorded under its position; the real
// event, verified, stands for the id and is decided. Before, the first message with
// an id stood for both, before verification.
func TestForgeryInTheSameBatchDropsTheRealFailure(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		real := oomOf("k8s-job-u1", "ml", "train", 8<<30, nil, 1)
		forged := oomOf("k8s-job-u1", "team-x", "train", 8<<30, nil, 1) // not watched: rejected without asking the cluster
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol, Verifier: nsVerifier{ns: "ml", job: real.Job}}
		batch := []ingest.Message{{Topic: "f", Offset: 1, Value: mustJSON(t, forged)}, {Topic: "f", Offset: 2, Value: mustJSON(t, real)}}
		if _, err := in.Handle(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if r, err := store.Get(ctx, RejectedID(&batch[0])); err != nil || r.State != ledger.Rejected {
			t.Fatalf("the forgery: %v, %v; want rejected under its position", r.State, err)
		}
		if r, err := store.Get(ctx, real.ID); err != nil || r.State == ledger.Rejected {
			t.Errorf("the real failure behind a forgery of its id in the same batch: %v, %v; want it decided", r.State, err)
		}
	})
}

// nsVerifier bears out job (by id) only in namespace ns.
type nsVerifier struct {
	ns  string
	job failure.Job
}

func (v nsVerifier) Verify(_ context.Context, ev *failure.Event) (Verified, error) {
	if ev.Job.Namespace != v.ns || ev.Job.UID != v.job.UID {
		return Verified{}, fmt.Errorf("namespace %q is not one autofix watches: %w", ev.Job.Namespace, ErrUnverified)
	}
	return Verified{Job: v.job}, nil
}

// blipLedger fails the next n HistorySince calls, as a database does for one
// statement (a PostgreSQL statement timeout or serialization failure, SQLite's
// "database is locked" from another process), while Ping answers.
type blipLedger struct {
	*ledger.Store
	n atomic.Int64
}

func (l *blipLedger) HistorySince(ctx context.Context, after map[string]int64, limit int) (map[string]ledger.TemplateHistory, error) {
	if l.n.Add(-1) >= 0 {
		return nil, errors.New("ERROR: canceling statement due to statement timeout (SQLSTATE 57014)")
	}
	return l.Store.HistorySince(ctx, after, limit)
}

// TestTransientLedgerErrorIsNotPoison: one failed statement on a batch of one (the
// usual batch on a quiet topic) does not quarantine a good event: the message is
// tried again on its own first. Before, it went straight to quarantine.
func TestTransientLedgerErrorIsNotPoison(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		l := &blipLedger{Store: store}
		l.n.Store(1)
		in := &Intake{Ledger: l, Recommender: sharedRecommender(t), Policy: &pol}
		batch := []ingest.Message{{Topic: "f", Offset: 1, Value: mustJSON(t, oomOf("good", "ml", "train", 8<<30, nil, 1))}}
		for range 3 { // the consumer hands a failed batch again
			rej, err := in.Handle(ctx, batch)
			if err == nil {
				if len(rej) > 0 {
					t.Errorf("a good event was dead-lettered after one failed statement: %s", rej[0].Reason)
				}
				break
			}
		}
		if r, err := store.Get(ctx, "good"); err != nil || r.State == ledger.Rejected {
			q, _ := store.Get(ctx, RejectedID(&batch[0]))
			t.Errorf("good: %v, %v; want decided (quarantined instead: %q)", r.State, err, q.Error)
		}
	})
}

// TestForgeryDoesNotSpendTheRealFailuresPatience: the time an event has waited for
// verification is kept by message, and forgotten once it is settled: a forgery of a
// running Job's id that once could not be verified leaves nothing behind for the
// real failure. Before, it was kept by event id, which anyone can claim.
func TestForgeryDoesNotSpendTheRealFailuresPatience(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		now := time.Unix(1000, 0)
		v := fakeVerifier{jobs: map[string]failure.Job{}, unknown: map[string]bool{"k8s-job-u1": true}}
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol, Verifier: v, Now: func() time.Time { return now }}
		ev := oomOf("k8s-job-u1", "ml", "train", 8<<30, nil, 1)
		if _, _, err := handleAt(t, in, ev, 1); !errors.Is(err, ingest.ErrNotYet) { // the forgery, while the API server is slow
			t.Fatalf("forgery: %v", err)
		}
		delete(v.unknown, "k8s-job-u1")
		if _, _, err := handleAt(t, in, ev, 1); err != nil { // answered: the Job has not failed; rejected
			t.Fatal(err)
		}
		now = now.Add(20 * time.Minute) // the Job really fails; its event meets one slow answer
		v.jobs["k8s-job-u1"] = ev.Job
		v.unknown["k8s-job-u1"] = true
		m, _, err := handleAt(t, in, ev, 2)
		if !errors.Is(err, ingest.ErrNotYet) {
			r, _ := store.Get(ctx, RejectedID(m))
			t.Errorf("the real failure, on its first delivery: %v (%s %q); want it to wait its own patience", err, r.State, r.Reason)
		}
	})
}

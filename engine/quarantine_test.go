package engine

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// nanRecommender answers the events named in poison with a recommendation JSON
// cannot encode (a NaN), as a model bug would; the others it passes on.
type nanRecommender struct {
	Recommender
	poison map[string]bool
}

func (r nanRecommender) Recommend(ev *failure.Event, h []failure.Outcome) failure.Recommendation {
	rec := r.Recommender.Recommend(ev, h)
	if r.poison[ev.ID] {
		rec.Retry, rec.Chosen = true, 0
		rec.Options = []failure.Option{{Resources: ev.Job.Resources, PSuccess: math.NaN(), PFix: 0.99, CostMultiple: 1}}
	}
	return rec
}

// refusingLedger is a ledger that refuses, without saying which, every Record call
// that holds one of the ids in refuse (as a database refusing a value would), and
// that can be taken down.
type refusingLedger struct {
	*ledger.Store
	refuse map[string]bool
	down   atomic.Bool
}

func (l *refusingLedger) Record(ctx context.Context, entries []ledger.Entry) ([]bool, error) {
	if l.down.Load() {
		return nil, errors.New("dial tcp 10.0.0.1:5432: connection refused")
	}
	for _, e := range entries {
		if l.refuse[e.EventID] {
			return nil, errors.New("ERROR: invalid input syntax (SQLSTATE 22P02)")
		}
	}
	return l.Store.Record(ctx, entries)
}

func (l *refusingLedger) Ping(ctx context.Context) error {
	if l.down.Load() {
		return errors.New("dial tcp 10.0.0.1:5432: connection refused")
	}
	return l.Store.Ping(ctx)
}

// batchOf is the sample events with extra ones mixed in, as one batch of messages.
func batchOf(t *testing.T, extra ...*failure.Event) []ingest.Message {
	t.Helper()
	var msgs []ingest.Message
	for i, v := range exampleLines(t) {
		msgs = append(msgs, ingest.Message{Topic: "f", Offset: int64(i), Value: v, Time: time.Now()})
	}
	for _, ev := range extra {
		msgs = append(msgs, ingest.Message{Topic: "f", Offset: int64(len(msgs)), Value: mustJSON(t, ev), Time: time.Now()})
	}
	return msgs
}

func oomAt(id, name string) *failure.Event {
	return &failure.Event{ID: id, Job: failure.Job{Namespace: "ml", Name: name, Attempt: 1, Kind: failure.Batch,
		Resources: failure.Resources{CPUMillis: 2000, MemoryBytes: 8 << 30}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}}
}

// TestPoisonIsQuarantined: an event whose decision cannot be recorded is recorded
// rejected, with the reason, and dead-lettered; the rest of its batch is recorded.
// Before, Record failed for the whole batch and the consumer handed it again forever.
func TestPoisonIsQuarantined(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		refusing := &refusingLedger{Store: store, refuse: map[string]bool{"db-poison": true}}
		in := &Intake{Ledger: refusing, Policy: &pol,
			Recommender: nanRecommender{sharedRecommender(t), map[string]bool{"nan-poison": true}}}
		msgs := batchOf(t, oomAt("nan-poison", "a"), oomAt("db-poison", "b"), oomAt("after", "c"))
		rejected, err := in.Handle(context.Background(), msgs)
		if err != nil {
			t.Fatalf("Handle = %v; one poison message failed the batch", err)
		}
		reasons := map[int]string{}
		for _, r := range rejected {
			reasons[r.Index] = r.Reason
		}
		n := len(msgs)
		for _, c := range []struct {
			index int
			want  string
		}{{n - 3, "cannot be recorded: encode recommendation: json: unsupported value: NaN"}, {n - 2, "cannot be recorded: ERROR: invalid input syntax"}} {
			if !strings.Contains(reasons[c.index], c.want) {
				t.Errorf("message %d: dead-letter reason %q, want one containing %q", c.index, reasons[c.index], c.want)
			}
			r, err := store.Get(context.Background(), RejectedID(&msgs[c.index]))
			if err != nil || r.State != ledger.Rejected || !strings.Contains(r.Error, c.want) {
				t.Errorf("message %d in the ledger: %+v, %v; want rejected with %q", c.index, r.State, err, c.want)
			}
		}
		if len(rejected) != 2 {
			t.Errorf("dead-lettered %d messages (%v), want the 2 poison ones", len(rejected), reasons)
		}
		for _, id := range []string{"after", "sample-oomkilled"} {
			if r, err := store.Get(context.Background(), id); err != nil || r.State == ledger.Rejected {
				t.Errorf("%s: %v, %v; want it recorded and decided", id, r.State, err)
			}
		}
		// Delivered again (a crash before the commit): the same outcome, no error.
		again, err := in.Handle(context.Background(), msgs)
		if err != nil || len(again) != 2 {
			t.Errorf("Handle again = %d rejections, %v; want the 2 poison ones dead-lettered again", len(again), err)
		}
	})
}

// TestLedgerDownIsNotPoison: when the ledger cannot be reached, nothing is
// quarantined — the batch fails, to be handed again — and once the ledger is back
// the events are recorded as usual.
func TestLedgerDownIsNotPoison(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		down := &refusingLedger{Store: store}
		in := &Intake{Ledger: down, Policy: &pol, Recommender: sharedRecommender(t)}
		msgs := batchOf(t, oomAt("e1", "a"))
		down.down.Store(true)
		if _, err := in.Handle(context.Background(), msgs); err == nil {
			t.Fatal("Handle succeeded with the ledger down")
		}
		down.down.Store(false)
		rejected, err := in.Handle(context.Background(), msgs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rejected {
			t.Errorf("message %d dead-lettered: %s", r.Index, r.Reason)
		}
		if r, err := store.Get(context.Background(), "e1"); err != nil || r.State == ledger.Rejected {
			t.Errorf("e1 = %v, %v; want it decided", r.State, err)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeadLetterFailedIsRecorded: a rejected message the consumer could not
// dead-letter says so in its ledger record.
func TestDeadLetterFailedIsRecorded(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		in := &Intake{Ledger: store, Policy: &pol, Recommender: sharedRecommender(t)}
		msgs := []ingest.Message{{Topic: "f", Partition: 2, Offset: 7, Value: []byte(`{"id":`), Time: time.Now()}}
		if rej, err := in.Handle(context.Background(), msgs); err != nil || len(rej) != 1 {
			t.Fatalf("Handle = %v, %v; want one rejection", rej, err)
		}
		if err := in.DeadLetterFailed(context.Background(), &msgs[0], "decode", errors.New("[10] Message Size Too Large")); err != nil {
			t.Fatal(err)
		}
		r, err := store.Get(context.Background(), RejectedID(&msgs[0]))
		if err != nil {
			t.Fatal(err)
		}
		last := r.Audit[len(r.Audit)-1]
		if last.Action != "dead-letter" || !strings.Contains(last.Detail, "Message Size Too Large") || r.State != ledger.Rejected {
			t.Errorf("last audit row %+v (state %s), want the failed dead-letter noted", last, r.State)
		}
	})
}

package engine

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// TestHistoryCacheSeesOtherReplicas: two Intakes (replicas) share a ledger and
// alternate on one template; each must see every outcome, its own and the other's.
func TestHistoryCacheSeesOtherReplicas(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		rec := sharedRecommender(t)
		a := &Intake{Ledger: store, Recommender: rec, Policy: &pol, HistoryLimit: 5}
		b := &Intake{Ledger: store, Recommender: rec, Policy: &pol, HistoryLimit: 5}
		key := "ml/etl"
		for i := range 7 {
			in := []*Intake{a, b}[i%2]
			ev := &failure.Event{ID: fmt.Sprintf("h-%d", i), Job: failure.Job{Namespace: "ml", Name: fmt.Sprintf("etl-%d", i), Template: "etl",
				Attempt: 1, Resources: failure.Resources{MemoryBytes: int64(i+1) << 30}},
				Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 60}}
			handle(t, in, ev, int64(i))
			for name, x := range map[string]*Intake{"a": a, "b": b} {
				h, err := x.history(context.Background(), []string{key})
				if err != nil {
					t.Fatal(err)
				}
				got := h[key]
				want := min(i+1, 5)
				if len(got) != want || got[len(got)-1].Resources.MemoryBytes != int64(i+1)<<30 {
					t.Fatalf("after event %d replica %s sees %d outcomes ending at %v, want %d ending with the newest",
						i, name, len(got), got[len(got)-1].Resources, want)
				}
			}
		}
	})
}

// racingLedger runs between() once, right after a HistorySince: another replica
// recording while this one decides.
type racingLedger struct {
	*ledger.Store
	between func()
}

func (r *racingLedger) HistorySince(ctx context.Context, after map[string]int64, limit int) (map[string]ledger.TemplateHistory, error) {
	h, err := r.Store.HistorySince(ctx, after, limit)
	if f := r.between; f != nil {
		r.between = nil
		f()
	}
	return h, err
}

// TestHistoryCacheWithAnInterleavedWriter: replica B records an outcome of the
// template after replica A read its history and before A recorded; A's history must
// still match the ledger's afterwards.
func TestHistoryCacheWithAnInterleavedWriter(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		rec := sharedRecommender(t)
		ev := func(i int) *failure.Event {
			return &failure.Event{ID: fmt.Sprintf("r-%d", i), Job: failure.Job{Namespace: "ml", Name: fmt.Sprintf("etl-%d", i), Template: "etl",
				Attempt: 1, Resources: failure.Resources{MemoryBytes: int64(i+1) << 30}},
				Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 60}}
		}
		b := &Intake{Ledger: store, Recommender: rec, Policy: &pol}
		race := &racingLedger{Store: store}
		a := &Intake{Ledger: race, Recommender: rec, Policy: &pol}
		handle(t, a, ev(0), 0)
		race.between = func() { handle(t, b, ev(1), 1) }
		handle(t, a, ev(2), 2)
		handle(t, a, ev(3), 3)
		got, err := a.history(context.Background(), []string{"ml/etl"})
		if err != nil {
			t.Fatal(err)
		}
		want, err := store.History(context.Background(), []string{"ml/etl"}, 20)
		if err != nil {
			t.Fatal(err)
		}
		mem := func(os []failure.Outcome) []int64 {
			var m []int64
			for _, o := range os {
				m = append(m, o.Resources.MemoryBytes>>30)
			}
			return m
		}
		if g, w := mem(got["ml/etl"]), mem(want["ml/etl"]); !slices.Equal(g, w) {
			t.Errorf("replica A's history (GiB) = %v, the ledger's = %v", g, w)
		}
	})
}

// TestHistoryCacheHoldsWhatTheLedgerHolds: the cached history is the ledger's, field
// for field — a failed run's price and unpriced note included — so that what the
// recommender is given does not depend on whether the cache was warm.
func TestHistoryCacheHoldsWhatTheLedgerHolds(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		pol := policy.Default()
		a := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol}
		for i := range 3 {
			ev := &failure.Event{ID: fmt.Sprintf("c-%d", i), Job: failure.Job{Namespace: "ml", Name: fmt.Sprintf("etl-%d", i), Template: "etl",
				Attempt: 1, Resources: failure.Resources{MemoryBytes: int64(i+1) << 30}},
				Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 60, Node: "n1",
					Cost: 1.25 * float64(i+1), Unpriced: "1 of the Job's finished pods were not there to price"}}
			handle(t, a, ev, int64(i))
		}
		got, err := a.history(context.Background(), []string{"ml/etl"})
		if err != nil {
			t.Fatal(err)
		}
		want, err := store.History(context.Background(), []string{"ml/etl"}, 20)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := got["ml/etl"], want["ml/etl"]; len(w) != 3 || !reflect.DeepEqual(g, w) {
			t.Errorf("the cached history:\n%+v\nthe ledger's:\n%+v", g, w)
		}
	})
}

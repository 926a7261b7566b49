package engine

import (
	"context"
	"fmt"
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
		rec := newRecommender(t)
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

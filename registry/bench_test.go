package registry

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkEvaluate scores two versions on 1000 recorded retries of a SQLite ledger:
// the cost of a promotion's gates, reading included.
func BenchmarkEvaluate(b *testing.B) {
	store := openLedger(b, filepath.Join(b.TempDir(), "ledger.db"))
	fill(b, store, plan(1000))
	r, err := New(Options{Ledger: store, Gates: Gates{MinOutcomes: 10, Window: 60 * 24 * time.Hour},
		Now: func() time.Time { return t0.Add(1001 * time.Hour) }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	v, err := r.Register(ctx, constant(b, 1), Registration{Actor: "ada"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		ev, err := r.Evaluate(ctx, v.Version)
		if err != nil || ev.Gates.Outcomes != 1000 {
			b.Fatalf("Evaluate = %d outcomes, %v", ev.Gates.Outcomes, err)
		}
	}
}

package ledger

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkKindStats reads the figures of every kind of fix over a window of
// 50,000 failures (a third reviewed, 3,000 of those decided by a person; 200
// templates), and of one kind: what GET /v1/autonomy and a grant read.
func BenchmarkKindStats(b *testing.B) {
	const events, decided = 50000, 3000
	forEachDSN(b, func(tb testing.TB, dsn string) {
		b := tb.(*testing.B)
		s := openTest(b, dsn)
		ctx := context.Background()
		var pending []string
		for start := 0; start < events; start += 1000 {
			batch := make([]Entry, 0, 1000)
			for n := start; n < start+1000; n++ {
				id := fmt.Sprintf("bench-%09d", n)
				st := []State{Approved, PendingReview, Rejected}[n%3]
				batch = append(batch, entry(id, st, entryOpt{tmpl: fmt.Sprintf("tmpl-%d", n%200), at: t0.Add(time.Duration(n) * time.Second)}))
				if st == PendingReview && len(pending) < decided {
					pending = append(pending, id)
				}
			}
			mustRecord(b, s, batch...)
		}
		for i, id := range pending {
			var err error
			if i%10 == 0 {
				err = s.Reject(ctx, id, "alice", "no", t0)
			} else {
				err = s.Approve(ctx, id, Attempt{Number: 2, JobName: "job-" + id}, "alice", "", t0)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		f := KindFilter{Since: t0, Until: t0.Add(events * time.Second)}
		b.Run("all", func(b *testing.B) {
			for b.Loop() {
				got, err := s.KindStats(ctx, f)
				if err != nil || len(got) != 200 {
					b.Fatalf("KindStats = %d kinds, %v; want 200", len(got), err)
				}
			}
		})
		one := f
		one.Kind = &Kind{Category: "oom_memory", Template: "team-a/tmpl-1", JobKind: "training"}
		b.Run("one", func(b *testing.B) {
			for b.Loop() {
				if got, err := s.KindStats(ctx, one); err != nil || len(got) != 1 {
					b.Fatalf("KindStats(one) = %d kinds, %v; want 1", len(got), err)
				}
			}
		})
	})
}

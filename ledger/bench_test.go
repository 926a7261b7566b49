package ledger

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkRecord records batches of 500 realistic entries (an approved, a pending and
// a policy-rejected event with a 2 KiB log tail and a recommendation, and one malformed
// message in every 20) and reports events recorded per second.
func BenchmarkRecord(b *testing.B) {
	const batch = 500
	forEachDSN(b, func(tb testing.TB, dsn string) {
		b := tb.(*testing.B)
		s := openTest(b, dsn)
		ctx := context.Background()
		n := 0
		next := func() []Entry {
			out := make([]Entry, batch)
			for i := range out {
				n++
				id := fmt.Sprintf("bench-%09d", n)
				at := t0.Add(time.Duration(n) * time.Millisecond)
				if n%20 == 0 {
					out[i] = rejected(id, at)
					continue
				}
				st := []State{Approved, PendingReview, Rejected}[n%3]
				out[i] = entry(id, st, entryOpt{tmpl: fmt.Sprintf("tmpl-%d", n%200), at: at})
			}
			return out
		}
		iters := 0
		for b.Loop() {
			iters++
			b.StopTimer()
			entries := next()
			b.StartTimer()
			fresh, err := s.Record(ctx, entries)
			if err != nil {
				b.Fatal(err)
			}
			if !fresh[0] {
				b.Fatal("entry not fresh")
			}
		}
		b.ReportMetric(float64(iters*batch)/b.Elapsed().Seconds(), "events/s")
	})
}

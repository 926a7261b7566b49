package ledger

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestPendingReviewsLongestWaitingFirst(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		// Recorded newest first, so that the order is the ledger's, not the insertion's.
		mustRecord(t, s,
			entry("p3", PendingReview, entryOpt{at: t0.Add(3 * time.Minute)}),
			entry("approved", Approved, entryOpt{at: t0.Add(2 * time.Minute)}),
			entry("p2b", PendingReview, entryOpt{at: t0.Add(2 * time.Minute)}),
			entry("p2a", PendingReview, entryOpt{at: t0.Add(2 * time.Minute)}),
			entry("rejected", Rejected, entryOpt{at: t0}),
			entry("p1", PendingReview, entryOpt{at: t0.Add(time.Minute)}))
		if err := s.Reject(ctx, "p2b", "alice", "no", t0.Add(4*time.Minute)); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			limit int
			want  []string
		}{
			{0, nil},
			{-1, nil},
			{1, []string{"p1"}},
			{2, []string{"p1", "p2a"}},
			{10, []string{"p1", "p2a", "p3"}},
		}
		for _, tc := range tests {
			got, err := s.PendingReviews(ctx, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range got {
				ids = append(ids, r.EventID)
				if r.State != PendingReview || r.Event == nil || r.Recommendation == nil {
					t.Errorf("PendingReviews(%d): %s in state %s, event %v, recommendation %v; want pending_review, both read",
						tc.limit, r.EventID, r.State, r.Event != nil, r.Recommendation != nil)
				}
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("PendingReviews(%d) = %v, want %v", tc.limit, ids, tc.want)
			}
		}
	})
}

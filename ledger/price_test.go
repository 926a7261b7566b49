package ledger

import (
	"context"
	"testing"
)

// TestRecordKeepsTheFailedRunsPrice: the failed run an event reports joins its
// template's history with the price its publisher gave it, and the note of what
// that price leaves out.
func TestRecordKeepsTheFailedRunsPrice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		e := entry("ev-priced", PendingReview, entryOpt{ns: "ml", tmpl: "bert"})
		e.Event.Failure.Cost, e.Event.Failure.Unpriced = 12.5, "1 of the Job's finished pods were deleted before they were priced"
		mustRecord(t, s, e)
		h, err := s.History(context.Background(), []string{"ml/bert"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h["ml/bert"]) != 1 {
			t.Fatalf("History(ml/bert) = %+v, want the failed run", h["ml/bert"])
		}
		if o := h["ml/bert"][0]; o.Cost != 12.5 || o.Unpriced != e.Event.Failure.Unpriced {
			t.Errorf("failed run: cost %v, unpriced %q; want the event's, %v and %q", o.Cost, o.Unpriced, 12.5, e.Event.Failure.Unpriced)
		}
	})
}

package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

// TestRecentPredictedOutcomes: the attempts that ended, latest first, with their
// option's P(success); attempts still running, abandoned, or without a prediction
// are left out.
func TestRecentPredictedOutcomes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		withP := func(id string, p float64) Entry {
			e := entry(id, Approved, entryOpt{})
			if p >= 0 {
				e.Attempt.Option = &failure.Option{PSuccess: p}
			}
			return e
		}
		mustRecord(t, s, withP("a", 0.9), withP("b", 0.6), withP("c", 0.8), withP("no-option", -1), withP("running", 0.7))
		finish(t, s, "a", Succeeded, failure.Outcome{Succeeded: true}, t0.Add(time.Hour))
		finish(t, s, "b", Failed, failure.Outcome{}, t0.Add(3*time.Hour))
		finish(t, s, "c", Succeeded, failure.Outcome{Succeeded: true}, t0.Add(2*time.Hour))
		finish(t, s, "no-option", Succeeded, failure.Outcome{Succeeded: true}, t0.Add(4*time.Hour))
		got, err := s.RecentPredictedOutcomes(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		want := []PredictedOutcome{{"b", 0.6, false, t0.Add(3 * time.Hour)}, {"c", 0.8, true, t0.Add(2 * time.Hour)},
			{"a", 0.9, true, t0.Add(time.Hour)}}
		if len(got) != len(want) {
			t.Fatalf("RecentPredictedOutcomes = %+v, want %+v", got, want)
		}
		for i := range want {
			if got[i].EventID != want[i].EventID || got[i].PSuccess != want[i].PSuccess || got[i].Succeeded != want[i].Succeeded ||
				!got[i].FinishedAt.Equal(want[i].FinishedAt) {
				t.Errorf("RecentPredictedOutcomes[%d] = %+v, want %+v", i, got[i], want[i])
			}
		}
		if got, _ := s.RecentPredictedOutcomes(context.Background(), 1); len(got) != 1 || got[0].EventID != "b" {
			t.Errorf("RecentPredictedOutcomes(1) = %+v, want b's alone", got)
		}
	})
}

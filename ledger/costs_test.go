package ledger

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

// TestAttemptOutcomes: for each remediation asked about, the outcome of the attempt
// autofix ran, as Finish recorded it — never the failed run its event reported, which
// is in the same template's history under the same event id.
func TestAttemptOutcomes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		// Every event reports its failed run priced by its publisher.
		priced := func(e Entry) Entry {
			e.Event.Failure.Cost = 4.75
			return e
		}
		mustRecord(t, s,
			priced(entry("fixed", Approved, entryOpt{chain: "c-fixed"})),
			priced(entry("broke", Approved, entryOpt{chain: "c-broke"})),
			// The failed run it answers is attempt 2 of its chain: its own is 3.
			priced(entry("later", Approved, entryOpt{chain: "c-later", attempt: 2})),
			priced(entry("running", Approved, entryOpt{chain: "c-running"})),
			priced(entry("gone", Approved, entryOpt{chain: "c-gone"})),
			priced(entry("waiting", PendingReview, entryOpt{chain: "c-waiting"})))
		at := t0.Add(time.Hour)
		for _, id := range []string{"fixed", "broke", "later", "running", "gone"} {
			if err := s.Transition(ctx, id, Approved, Submitted, "dispatcher", "", at); err != nil {
				t.Fatalf("Transition(%s) to submitted = %v", id, err)
			}
		}
		// The callers' attempt numbers are wrong or missing: the ledger numbers the
		// outcome as its attempt.
		finish := []struct {
			id string
			to State
			o  failure.Outcome
		}{
			{"fixed", Succeeded, failure.Outcome{DurationSeconds: 3600, Cost: 6.25}},
			{"broke", Failed, failure.Outcome{Attempt: 7, DurationSeconds: 20, Unpriced: "the Job started no pod"}},
			{"later", Succeeded, failure.Outcome{Attempt: 1, DurationSeconds: 90, Cost: 1.5, Unpriced: "pod x has not ended"}},
			{"gone", Abandoned, failure.Outcome{Cost: 99}},
		}
		for _, f := range finish {
			if err := s.Finish(ctx, f.id, f.to, f.o, "watcher", "", at.Add(time.Hour)); err != nil {
				t.Fatalf("Finish(%s, %s) = %v", f.id, f.to, err)
			}
		}
		// More ids than one statement binds, the ledger's among the last.
		var ids []string
		for i := range 600 {
			ids = append(ids, fmt.Sprintf("unknown-%03d", i))
		}
		ids = append(ids, "fixed", "broke", "later", "running", "gone", "waiting")
		got, err := s.AttemptOutcomes(ctx, ids)
		if err != nil {
			t.Fatalf("AttemptOutcomes = %v", err)
		}
		want := map[string]failure.Outcome{
			"fixed": {Template: "train-llm", Attempt: 2, Succeeded: true, DurationSeconds: 3600, Cost: 6.25},
			"broke": {Template: "train-llm", Attempt: 2, DurationSeconds: 20, Unpriced: "the Job started no pod"},
			"later": {Template: "train-llm", Attempt: 3, Succeeded: true, DurationSeconds: 90, Cost: 1.5, Unpriced: "pod x has not ended"},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("AttemptOutcomes =\n%+v\nwant\n%+v", got, want)
		}
		if got, err := s.AttemptOutcomes(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("AttemptOutcomes(nil) = %v, %v; want none", got, err)
		}
	})
}

// TestOutcomesIndexedByEvent: migration 0008 indexes the outcomes by event id, which
// AttemptOutcomes and Prune look them up by.
func TestOutcomesIndexedByEvent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		query := "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outcomes' AND name = 'outcomes_event'"
		if s.backend == backendPostgres {
			query = "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'outcomes' AND indexname = 'outcomes_event'"
		}
		var n int
		if err := s.r.QueryRowContext(context.Background(), query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("index outcomes_event: %d found, want 1", n)
		}
	})
}

package ledger

import (
	"context"
	"testing"
	"time"
)

// TestPrune: remediations that ended before the cut go, with their audit trail,
// attempts and outcomes; those that have not ended stay, however old; newer ones
// stay. Before, the ledger kept everything forever.
func TestPrune(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		old, recent := t0, t0.Add(100*24*time.Hour)
		mustRecord(t, s,
			entry("old-rejected", Rejected, entryOpt{at: old, tmpl: "a"}),
			entry("old-approved", Approved, entryOpt{at: old, tmpl: "a"}),
			entry("old-review", PendingReview, entryOpt{at: old, tmpl: "a"}),
			entry("new-rejected", Rejected, entryOpt{at: recent, tmpl: "a"}),
			entry("late-review", PendingReview, entryOpt{at: old, tmpl: "a"}),
			rejected("kafka:f/0/7", old),
		)
		if err := s.Transition(ctx, "old-approved", Approved, Abandoned, "dispatcher", "gone", old); err != nil {
			t.Fatal(err)
		}
		// Received long ago, rejected by a person just now: its trail is kept.
		if err := s.Reject(ctx, "late-review", "oncall", "not worth it", recent); err != nil {
			t.Fatal(err)
		}
		n, err := s.Prune(ctx, recent.Add(-90*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Errorf("Prune deleted %d remediations, want 3 (the old ones that ended)", n)
		}
		for id, want := range map[string]bool{"old-rejected": false, "old-approved": false, "kafka:f/0/7": false, "old-review": true, "new-rejected": true, "late-review": true} {
			_, err := s.Get(ctx, id)
			if got := err == nil; got != want {
				t.Errorf("after Prune, %s kept = %v (%v), want %v", id, got, err, want)
			}
		}
		for _, table := range []string{"audit", "attempts", "outcomes"} {
			var orphans int
			if err := s.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table+" WHERE event_id IN ('old-rejected', 'old-approved', 'kafka:f/0/7')").Scan(&orphans); err != nil {
				t.Fatal(err)
			}
			if orphans != 0 {
				t.Errorf("%d rows of pruned remediations left in %s", orphans, table)
			}
		}
		hist, err := s.History(ctx, []string{"team-a/a"}, 0)
		if err != nil || len(hist["team-a/a"]) != 3 {
			t.Errorf("history after Prune = %d outcomes (%v), want the 3 kept", len(hist["team-a/a"]), err)
		}
	})
}

// TestUpgradeFromTheLedgerBeforeTokens: a ledger migrated before attempt tokens
// (through 0005) opens, gets the column, and its attempts not yet submitted get a
// token; submitted ones keep none. A second review found that adding the column to a
// migration a ledger had already applied left it without one, and every event was
// then quarantined.
func TestUpgradeFromTheLedgerBeforeTokens(t *testing.T) {
	forEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		ctx := context.Background()
		s := openTest(t, dsn)
		mustRecord(t, s, entry("waiting", Approved, entryOpt{}), entry("sent", Approved, entryOpt{}))
		if err := s.Transition(ctx, "sent", Approved, Submitted, "dispatcher", "", t0); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{"ALTER TABLE attempts DROP COLUMN token", "DELETE FROM schema_migrations WHERE version = 6"} {
			if _, err := s.w.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openTest(t, dsn)
		if a := mustGet(t, s, "waiting").Attempts[0]; len(a.Token) != 32 {
			t.Errorf("an attempt not yet submitted has token %q after the upgrade, want one", a.Token)
		}
		if a := mustGet(t, s, "sent").Attempts[0]; a.Token != "" {
			t.Errorf("a submitted attempt has token %q after the upgrade, want none (its Job has none)", a.Token)
		}
	})
}

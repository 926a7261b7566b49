package ledger

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

// corrections reads every correction in force made at or after since.
func corrections(t *testing.T, s *Store, since time.Time) []CorrectedEvent {
	t.Helper()
	var out []CorrectedEvent
	if err := s.EachCorrection(context.Background(), since, func(c CorrectedEvent) error {
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatalf("EachCorrection(%v) = %v", since, err)
	}
	return out
}

// TestCorrectionsLabelTheRecordedEvent: a correction is kept with who and when, the
// latest is the one in force, every one is in the audit trail, and the reader gives
// the event as recorded with the label in force.
func TestCorrectionsLabelTheRecordedEvent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := entry("a", PendingReview, entryOpt{}), entry("b", Approved, entryOpt{at: t0.Add(time.Second)})
		mustRecord(t, s, a, b, entry("untouched", PendingReview, entryOpt{}))

		at1, at2, at3 := t0.Add(time.Hour), t0.Add(2*time.Hour), t0.Add(3*time.Hour)
		steps := []struct {
			id        string
			cat       failure.Category
			retryable bool
			actor     string
			note      string
			at        time.Time
		}{
			{"a", failure.UserCode, false, "val", "the loader leaks; a code bug", at1},
			{"b", failure.OOMGPU, true, "ada", "", at2},
			{"a", failure.DataError, false, "ada", "no: a corrupt shard", at3},
		}
		for _, st := range steps {
			if err := s.Correct(ctx, st.id, st.cat, st.retryable, st.actor, st.note, st.at); err != nil {
				t.Fatalf("Correct(%s, %s) = %v", st.id, st.cat, err)
			}
		}

		m := mustGet(t, s, "a")
		want := &Correction{Category: failure.DataError, Retryable: false, Actor: "ada", Note: "no: a corrupt shard", At: at3}
		if !reflect.DeepEqual(m.Correction, want) {
			t.Errorf("Get(a).Correction = %+v, want %+v", m.Correction, want)
		}
		if m.State != PendingReview || m.Category != failure.OOMMemory {
			t.Errorf("after corrections a is %s, %s; want its state and classification unchanged (pending_review, oom_memory)", m.State, m.Category)
		}
		var audit []string
		for _, e := range m.Audit {
			if e.Action == "correct" {
				audit = append(audit, fmt.Sprintf("%s %s->%s %s", e.Actor, e.From, e.To, e.Detail))
			}
		}
		wantAudit := []string{
			"val pending_review->pending_review category user_code, not retryable (classified oom_memory): the loader leaks; a code bug",
			"ada pending_review->pending_review category data_error, not retryable (classified oom_memory): no: a corrupt shard",
		}
		if !reflect.DeepEqual(audit, wantAudit) {
			t.Errorf("correct rows of a's audit trail:\n%q\nwant\n%q", audit, wantAudit)
		}
		if got := mustGet(t, s, "untouched").Correction; got != nil {
			t.Errorf("Get(untouched).Correction = %+v, want nil", got)
		}

		all := corrections(t, s, time.Time{})
		if len(all) != 2 {
			t.Fatalf("EachCorrection gave %d remediations, want 2 (a and b, each once)", len(all))
		}
		// Oldest correction in force first: b's (at2), then a's (at3).
		for i, w := range []struct {
			entry Entry
			c     Correction
		}{
			{b, Correction{Category: failure.OOMGPU, Retryable: true, Actor: "ada", At: at2}},
			{a, *want},
		} {
			got := all[i]
			if got.EventID != w.entry.EventID || got.Unreadable != "" || got.Classified != failure.OOMMemory || got.Correction != w.c {
				t.Errorf("correction %d = %s %+v classified %s (%q), want %s %+v classified oom_memory",
					i, got.EventID, got.Correction, got.Classified, got.Unreadable, w.entry.EventID, w.c)
			}
			if got.Event == nil || !reflect.DeepEqual(*got.Event, *w.entry.Event) {
				t.Errorf("correction %d: event %+v, want the recorded %+v", i, got.Event, w.entry.Event)
			}
		}
		if got := corrections(t, s, at3); len(got) != 1 || got[0].EventID != "a" {
			t.Errorf("EachCorrection(since the last) = %d corrections, want a's alone", len(got))
		}
		// a's correction in force is at3: a since between its two corrections still
		// has it, with the label in force.
		if got := corrections(t, s, at2.Add(time.Minute)); len(got) != 1 || got[0].Correction.Category != failure.DataError {
			t.Errorf("EachCorrection(after b's) = %+v, want a's latest alone", got)
		}
		if got := corrections(t, s, at3.Add(time.Nanosecond)); len(got) != 0 {
			t.Errorf("EachCorrection(after every one) = %d corrections, want none", len(got))
		}
	})
}

// TestCorrectRefuses: what can never be a correction names its field, an unknown
// remediation is not found, a rejected message has nothing to label, and none of
// them writes anything.
func TestCorrectRefuses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("ev", PendingReview, entryOpt{}), rejected("kafka:failures/0/7", t0))
		for _, c := range []struct {
			name, id         string
			cat              failure.Category
			actor, note      string
			field            string
			notFound, confli bool
		}{
			{name: "unknown category", id: "ev", cat: "oom", actor: "val", field: "category"},
			{name: "empty category", id: "ev", cat: "", actor: "val", field: "category"},
			{name: "no actor", id: "ev", cat: failure.UserCode, field: "actor"},
			{name: "actor with a newline", id: "ev", cat: failure.UserCode, actor: "val\nada", field: "actor"},
			{name: "note too long", id: "ev", cat: failure.UserCode, actor: "val", note: strings.Repeat("x", MaxCorrectionNote+1), field: "note"},
			{name: "note with a NUL", id: "ev", cat: failure.UserCode, actor: "val", note: "a\x00b", field: "note"},
			{name: "note not UTF-8", id: "ev", cat: failure.UserCode, actor: "val", note: "a\xffb", field: "note"},
			{name: "unknown id", id: "nope", cat: failure.UserCode, actor: "val", notFound: true},
			{name: "rejected message", id: "kafka:failures/0/7", cat: failure.UserCode, actor: "val", confli: true},
		} {
			err := s.Correct(ctx, c.id, c.cat, false, c.actor, c.note, t0)
			var ce *CorrectionError
			switch {
			case c.field != "":
				if !errors.As(err, &ce) || ce.Field != c.field {
					t.Errorf("%s: Correct = %v, want a *CorrectionError naming %s", c.name, err, c.field)
				}
			case c.notFound:
				if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), c.id) {
					t.Errorf("%s: Correct = %v, want ErrNotFound naming %s", c.name, err, c.id)
				}
			case c.confli:
				if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "rejected message") {
					t.Errorf("%s: Correct = %v, want ErrConflict saying it is a rejected message", c.name, err)
				}
			}
		}
		if err := s.Correct(ctx, "ev", failure.UserCode, false, "val", strings.Repeat("x", MaxCorrectionNote)+"", t0); err != nil {
			t.Errorf("Correct with a note of exactly %d bytes = %v", MaxCorrectionNote, err)
		}
		if got := corrections(t, s, time.Time{}); len(got) != 1 {
			t.Errorf("after the refusals and one good correction: %d corrections in force, want 1", len(got))
		}
		if n := len(mustGet(t, s, "kafka:failures/0/7").Audit); n != 1 {
			t.Errorf("the rejected message has %d audit rows, want its 1", n)
		}
	})
}

// TestConcurrentCorrectionsOfOneRemediation: replicas correcting one remediation at
// once each get their correction and audit row (the event's row orders them).
func TestConcurrentCorrectionsOfOneRemediation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("ev", PendingReview, entryOpt{}))
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				errs[i] = retryBusy(t, func() error {
					return s.Correct(ctx, "ev", failure.UserCode, false, fmt.Sprintf("p%d", i), "", t0.Add(time.Duration(i)*time.Second))
				})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Correct by p%d = %v", i, err)
			}
		}
		m := mustGet(t, s, "ev")
		got := 0
		for _, e := range m.Audit {
			if e.Action == "correct" {
				got++
			}
		}
		if got != n || m.Correction == nil {
			t.Errorf("%d correct rows in the audit trail and correction %+v; want %d and one in force", got, m.Correction, n)
		}
	})
}

// TestPruneTakesCorrections: a remediation that ended past the retention goes with
// its corrections. Before, the corrections' reference to the event stopped Prune.
func TestPruneTakesCorrections(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("old", Rejected, entryOpt{}), entry("live", PendingReview, entryOpt{}))
		for _, id := range []string{"old", "live"} {
			if err := s.Correct(ctx, id, failure.UserCode, false, "val", "", t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		n, err := s.Prune(ctx, t0.Add(24*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("Prune = %d, %v; want 1 (the ended remediation)", n, err)
		}
		got := corrections(t, s, time.Time{})
		if len(got) != 1 || got[0].EventID != "live" {
			t.Errorf("corrections after Prune: %+v, want live's alone", got)
		}
	})
}

// TestPruneKeepsAFreshCorrection: a remediation that ended long ago and was
// corrected within the retention is kept, labelled example and all, until the
// retention has passed since the correction too. Before, its end alone decided,
// and a correction made the day before pruning was lost with it.
func TestPruneKeepsAFreshCorrection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("old", Rejected, entryOpt{}))
		corrected := t0.Add(89 * 24 * time.Hour)
		if err := s.Correct(ctx, "old", failure.UserCode, false, "val", "", corrected); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Prune(ctx, t0.Add(24*time.Hour)); err != nil || n != 0 {
			t.Fatalf("Prune before the correction's retention = %d, %v; want 0", n, err)
		}
		if got := corrections(t, s, time.Time{}); len(got) != 1 || got[0].EventID != "old" {
			t.Errorf("corrections after Prune: %+v, want old's", got)
		}
		if n, err := s.Prune(ctx, corrected.Add(time.Second)); err != nil || n != 1 {
			t.Errorf("Prune after the correction's retention = %d, %v; want 1", n, err)
		}
	})
}

// TestAnUnreadableCorrectedEventIsReported: a stored event that no longer decodes
// is given with the reason, not dropped and not fatal.
func TestAnUnreadableCorrectedEventIsReported(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("bad", PendingReview, entryOpt{}), entry("good", PendingReview, entryOpt{}))
		for _, id := range []string{"bad", "good"} {
			if err := s.Correct(ctx, id, failure.UserCode, false, "val", "", t0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.w.ExecContext(ctx, s.q(`UPDATE events SET event_json = '{"id":"bad","job":{}}' WHERE event_id = ?`), "bad"); err != nil {
			t.Fatal(err)
		}
		got := corrections(t, s, time.Time{})
		if len(got) != 2 || got[0].EventID != "bad" || got[0].Event != nil || !strings.Contains(got[0].Unreadable, "job.name") ||
			got[1].Event == nil || got[1].Unreadable != "" {
			t.Errorf("corrections = %+v; want bad's unreadable (job.name), then good's", got)
		}
	})
}

// TestUpgradeToCorrections: a ledger migrated before corrections (through 0006)
// opens with the table, and its remediations can be corrected.
func TestUpgradeToCorrections(t *testing.T) {
	forEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		ctx := context.Background()
		s := openTest(t, dsn)
		mustRecord(t, s, entry("old", PendingReview, entryOpt{}))
		for _, q := range []string{"DROP TABLE corrections", "DELETE FROM schema_migrations WHERE version = 7"} {
			if _, err := s.w.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openTest(t, dsn)
		if err := s.Correct(ctx, "old", failure.Timeout, true, "val", "", t0); err != nil {
			t.Fatalf("Correct after the upgrade = %v", err)
		}
		if c := mustGet(t, s, "old").Correction; c == nil || c.Category != failure.Timeout {
			t.Errorf("the correction after the upgrade: %+v, want timeout", c)
		}
	})
}

package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

// life is how a fixture remediation goes after the policy's verdict: decided by
// decider (a person, or a machine actor) or applied on its own (decider ""), then
// ending in end ("" to stay where it is).
type life struct {
	id      string
	o       entryOpt
	review  bool   // the policy kept it for review
	reject  bool   // the decider rejected it
	decider string // who approved or rejected it; "" for none
	end     State  // succeeded, failed, abandoned or "" (still running, or waiting)
}

// live records l and takes it through its life.
func live(t *testing.T, s *Store, l life) {
	t.Helper()
	ctx := context.Background()
	st := Approved
	if l.review {
		st = PendingReview
	}
	mustRecord(t, s, entry(l.id, st, l.o))
	at := l.o.at.Add(time.Minute)
	if l.review && l.decider != "" {
		var err error
		if l.reject {
			err = s.Reject(ctx, l.id, l.decider, "no", at)
		} else {
			err = s.Approve(ctx, l.id, Attempt{Number: 2, JobName: "job-" + l.id}, l.decider, "ok", at)
		}
		if err != nil {
			t.Fatalf("decide %s: %v", l.id, err)
		}
	}
	if l.end == "" || l.reject || (l.review && l.decider == "") {
		return
	}
	at = at.Add(time.Minute)
	if err := s.Transition(ctx, l.id, Approved, Submitted, "dispatcher", "submitted", at); err != nil {
		t.Fatalf("submit %s: %v", l.id, err)
	}
	at = at.Add(time.Duration(len(l.id)) * time.Minute) // ends in the order of the ids' lengths
	if err := s.Finish(ctx, l.id, l.end, failure.Outcome{}, "watcher", "ended", at); err != nil {
		t.Fatalf("finish %s: %v", l.id, err)
	}
}

// TestKindStats: per kind, the decisions people made (never a machine actor's) and
// how its attempts ended, split by who approved them, over the window only.
func TestKindStats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := entryOpt{at: t0.Add(time.Hour)}
		b := entryOpt{ns: "team-b", tmpl: "etl", at: t0.Add(time.Hour)}
		c := entryOpt{cat: failure.DiskFull, at: t0.Add(time.Hour)}
		old := entryOpt{at: t0.Add(-time.Hour)}
		for _, l := range []life{
			{id: "a1", o: a, review: true, decider: "alice", end: Succeeded},
			{id: "a2", o: a, review: true, decider: "bob", end: Failed},
			{id: "a3", o: a, review: true, decider: "carol", reject: true},
			{id: "a4", o: a, end: Succeeded},
			{id: "a5", o: a, end: Failed},
			{id: "a6", o: a, end: Abandoned},
			{id: "a7", o: a, review: true},
			{id: "a8", o: a, review: true, decider: "dispatcher", end: Succeeded}, // a machine: not a review
			{id: "a9", o: a, end: ""},                                             // still running
			{id: "old", o: old, review: true, decider: "alice", end: Succeeded},
			{id: "b1", o: b, review: true, decider: "alice", reject: true},
			{id: "c1", o: c, end: Succeeded},
			{id: "d1", o: entryOpt{ns: "team-d", at: t0.Add(time.Hour)}, review: true}, // nothing decided or ended
		} {
			live(t, s, l)
		}
		mustRecord(t, s, rejected("kafka:x", t0.Add(time.Hour)))
		ka := KindStats{Kind: Kind{failure.OOMMemory, "team-a/train-llm"}, JobKind: failure.Training, Approved: 2, Rejected: 1,
			Reviewed: AttemptCounts{1, 1}, Automatic: AttemptCounts{2, 1}}
		kb := KindStats{Kind: Kind{failure.OOMMemory, "team-b/etl"}, JobKind: failure.Training, Rejected: 1}
		kc := KindStats{Kind: Kind{failure.DiskFull, "team-a/train-llm"}, JobKind: failure.Training, Automatic: AttemptCounts{1, 0}}
		tests := []struct {
			name string
			f    KindFilter
			want []KindStats
		}{
			{"window", KindFilter{Since: t0}, []KindStats{ka, kb, kc}},
			{"limit", KindFilter{Since: t0, Limit: 2}, []KindStats{ka, kb}},
			{"one kind", KindFilter{Since: t0, Kind: &kb.Kind}, []KindStats{kb}},
			{"until", KindFilter{Since: t0.Add(-2 * time.Hour), Until: t0},
				[]KindStats{{Kind: ka.Kind, JobKind: failure.Training, Approved: 1, Reviewed: AttemptCounts{1, 0}}}},
			{"none", KindFilter{Since: t0.Add(2 * time.Hour)}, nil},
		}
		for _, tt := range tests {
			got, err := s.KindStats(ctx, tt.f)
			if err != nil {
				t.Fatalf("%s: KindStats = %v", tt.name, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s: KindStats = %+v, want %+v", tt.name, got, tt.want)
			}
		}
	})
}

// TestAutomaticOutcomes: the latest automatic fixes of one kind received since a
// time, newest end first; those a person approved, abandoned or still running are
// not among them.
func TestAutomaticOutcomes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := entryOpt{at: t0.Add(time.Hour)}
		for _, l := range []life{
			{id: "before", o: entryOpt{at: t0.Add(-time.Hour)}, end: Failed},
			{id: "x", o: a, end: Failed},
			{id: "xx", o: a, end: Succeeded},
			{id: "xxx", o: a, end: Failed},
			{id: "xxxx", o: a, end: Abandoned},
			{id: "run", o: a},
			{id: "person", o: a, review: true, decider: "alice", end: Failed},
			{id: "other", o: entryOpt{cat: failure.DiskFull, at: t0.Add(time.Hour)}, end: Failed},
		} {
			live(t, s, l)
		}
		k := Kind{failure.OOMMemory, "team-a/train-llm"}
		for _, tt := range []struct {
			since time.Time
			limit int
			want  []bool
		}{
			{t0, 10, []bool{false, true, false}},
			{t0, 2, []bool{false, true}},
			{t0.Add(-2 * time.Hour), 10, []bool{false, true, false, false}},
			{t0.Add(2 * time.Hour), 10, nil},
		} {
			got, err := s.AutomaticOutcomes(ctx, k, tt.since, tt.limit)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("AutomaticOutcomes(since %v, %d) = %v, %v; want %v", tt.since, tt.limit, got, err, tt.want)
			}
		}
	})
}

// autonomyAudit is the autonomy rows of the audit trail: actor, action and detail.
func autonomyAudit(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	err := queryEach(context.Background(), s.r, "SELECT actor, action, detail FROM audit WHERE event_id = '' AND action LIKE 'autonomy-%' ORDER BY seq", nil,
		func(r *sql.Rows) error {
			var actor, action, detail string
			err := r.Scan(&actor, &action, &detail)
			out = append(out, actor+" "+action+" "+detail)
			return err
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestChangeAutonomy: a kind's state is its latest change; granting twice, revoking
// what is not granted, or revoking a grant no longer in force is a conflict; every
// change is audited with its figures.
func TestChangeAutonomy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		k := Kind{failure.OOMMemory, "team-a/trainer"}
		other := Kind{failure.DiskFull, "team-a/trainer"}
		ev := &AutonomyEvidence{Since: t0.Add(-720 * time.Hour), Until: t0, Stats: &KindStats{Kind: k, Approved: 11, Rejected: 1,
			Reviewed: AttemptCounts{9, 1}}}
		g, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: k, Action: AutonomyGrant, Actor: "alice", Evidence: ev, At: t0})
		if err != nil || g.Seq != 1 || g.Grant != 0 || !g.At.Equal(t0) {
			t.Fatalf("grant = %+v, %v; want seq 1 at %v", g, err, t0)
		}
		if _, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: k, Action: AutonomyGrant, Actor: "bob", At: t0}); !errors.Is(err, ErrConflict) {
			t.Errorf("granting again = %v, want a conflict", err)
		}
		if _, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: other, Action: AutonomyRevoke, Actor: "bob", Reason: "x"}); !errors.Is(err, ErrConflict) {
			t.Errorf("revoking what is not granted = %v, want a conflict", err)
		}
		if _, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: other, Action: AutonomyGrant, Actor: "bob", Forced: true,
			Reason: "we trust it", At: t0.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: k, Action: AutonomyRevoke, Grant: 7, Actor: "autonomy", Reason: "failing"}); !errors.Is(err, ErrConflict) {
			t.Errorf("revoking grant 7 = %v, want a conflict: grant 1 is in force", err)
		}
		grants, err := s.AutonomyGrants(ctx)
		if err != nil || len(grants) != 2 || grants[0].Kind != k || !reflect.DeepEqual(grants[0].Evidence, ev) || !grants[1].Forced {
			t.Fatalf("AutonomyGrants = %+v, %v; want both kinds, the first with its evidence, the second forced", grants, err)
		}
		r, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: k, Action: AutonomyRevoke, Grant: 1, Actor: "autonomy",
			Reason: "3 of the latest 10 automatic fixes failed", At: t0.Add(2 * time.Minute),
			Evidence: &AutonomyEvidence{Recent: &AttemptCounts{Succeeded: 5, Failed: 5}}})
		if err != nil || r.Seq != 3 || r.Grant != 1 {
			t.Fatalf("revoke = %+v, %v; want seq 3 ending grant 1", r, err)
		}
		if grants, _ := s.AutonomyGrants(ctx); len(grants) != 1 || grants[0].Kind != other {
			t.Errorf("AutonomyGrants after the revocation = %+v, want %s only", grants, other)
		}
		if _, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: k, Action: AutonomyGrant, Actor: "alice", At: t0.Add(3 * time.Minute)}); err != nil {
			t.Errorf("granting again after a revocation = %v", err)
		}
		changes, err := s.AutonomyChanges(ctx, 2)
		if err != nil || len(changes) != 2 || changes[0].Seq != 4 || changes[1].Seq != 3 || changes[1].Action != AutonomyRevoke {
			t.Errorf("AutonomyChanges(2) = %+v, %v; want seqs 4 and 3", changes, err)
		}
		want := []string{
			"alice autonomy-grant grant oom_memory on team-a/trainer; reviewed 12 (11 approved), outcomes 10 (9 succeeded)",
			"bob autonomy-grant grant disk_full on team-a/trainer (forced past the thresholds); reason: we trust it",
			"autonomy autonomy-revoke revoke oom_memory on team-a/trainer; " +
				"latest automatic fixes: 5 of 10 succeeded; reason: 3 of the latest 10 automatic fixes failed",
			"alice autonomy-grant grant oom_memory on team-a/trainer",
		}
		if got := autonomyAudit(t, s); !reflect.DeepEqual(got, want) {
			t.Errorf("audit =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

func TestChangeAutonomyRefuses(t *testing.T) {
	ok := AutonomyChange{Kind: Kind{failure.OOMMemory, "team-a/trainer"}, Action: AutonomyGrant, Actor: "alice"}
	tests := []struct {
		name  string
		edit  func(*AutonomyChange)
		field string
	}{
		{"no category", func(c *AutonomyChange) { c.Kind.Category = "" }, "category"},
		{"bogus category", func(c *AutonomyChange) { c.Kind.Category = "oom" }, "category"},
		{"unknown", func(c *AutonomyChange) { c.Kind.Category = failure.Unknown }, "category"},
		{"not retryable", func(c *AutonomyChange) { c.Kind.Category = failure.UserCode }, "category"},
		{"no template", func(c *AutonomyChange) { c.Kind.Template = "" }, "template"},
		{"no namespace", func(c *AutonomyChange) { c.Kind.Template = "trainer" }, "template"},
		{"upper-case namespace", func(c *AutonomyChange) { c.Kind.Template = "Team/trainer" }, "template"},
		{"space", func(c *AutonomyChange) { c.Kind.Template = "team-a/train er" }, "template"},
		{"two slashes", func(c *AutonomyChange) { c.Kind.Template = "team-a/a/b" }, "template"},
		{"newline", func(c *AutonomyChange) { c.Kind.Template = "team-a/a\nb" }, "template"},
		{"long", func(c *AutonomyChange) { c.Kind.Template = "team-a/" + strings.Repeat("x", 254) }, "template"},
		{"action", func(c *AutonomyChange) { c.Action = "maybe" }, "action"},
		{"no actor", func(c *AutonomyChange) { c.Actor = " " }, "actor"},
		{"forced revoke", func(c *AutonomyChange) { c.Action, c.Forced, c.Reason = AutonomyRevoke, true, "x" }, "force"},
		{"revoke without reason", func(c *AutonomyChange) { c.Action = AutonomyRevoke }, "reason"},
		{"forced without reason", func(c *AutonomyChange) { c.Forced = true }, "reason"},
		{"long reason", func(c *AutonomyChange) { c.Reason = strings.Repeat("x", MaxAutonomyReason+1) }, "reason"},
		{"control in reason", func(c *AutonomyChange) { c.Reason = "a\x00b" }, "reason"},
	}
	forEachBackend(t, func(t *testing.T, s *Store) {
		for _, tt := range tests {
			c := ok
			tt.edit(&c)
			_, err := s.ChangeAutonomy(context.Background(), c)
			var ae *AutonomyError
			if !errors.As(err, &ae) || ae.Field != tt.field {
				t.Errorf("%s: ChangeAutonomy = %v, want an *AutonomyError naming %s", tt.name, err, tt.field)
			}
		}
		if got, _ := s.AutonomyChanges(context.Background(), 10); len(got) != 0 {
			t.Errorf("%d changes recorded, want none", len(got))
		}
	})
}

// TestConcurrentGrants: replicas granting one kind at once record one grant.
func TestConcurrentGrants(t *testing.T) {
	forEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		ctx := context.Background()
		stores := []*Store{openTest(t, dsn), openTest(t, dsn), openTest(t, dsn)}
		errs := make([]error, len(stores))
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Go(func() {
				errs[i] = retryBusy(t, func() error {
					_, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: Kind{failure.Timeout, "team-a/etl"}, Action: AutonomyGrant,
						Actor: fmt.Sprintf("admin-%d", i)})
					return err
				})
			})
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrConflict):
				t.Errorf("replica %d: ChangeAutonomy = %v; want nil or a conflict", i, err)
			}
		}
		if won != 1 {
			t.Errorf("%d grants won, want 1", won)
		}
		if got, _ := stores[0].AutonomyChanges(ctx, 10); len(got) != 1 {
			t.Errorf("%d changes recorded, want 1", len(got))
		}
	})
}

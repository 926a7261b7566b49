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
	edit    bool   // the decider approved it with more memory than recommended
	decider string // who approved or rejected it; "" for none
	end     State  // succeeded, failed, abandoned or "" (still running, or waiting)
	grant   int64  // the grant that applied it on its own (Entry.Grant)
}

// live records l and takes it through its life.
func live(t *testing.T, s *Store, l life) {
	t.Helper()
	ctx := context.Background()
	st := Approved
	if l.review {
		st = PendingReview
	}
	e := entry(l.id, st, l.o)
	e.Grant = l.grant
	mustRecord(t, s, e)
	at := l.o.at.Add(time.Minute)
	if l.review && l.decider != "" {
		var err error
		if l.reject {
			err = s.Reject(ctx, l.id, l.decider, "no", at)
		} else {
			opt := e.Recommendation.Options[0]
			if l.edit {
				opt.Resources.MemoryBytes *= 2
				opt.Changes = append(opt.Changes, "edited by "+l.decider)
			}
			err = s.Approve(ctx, l.id, Attempt{Number: 2, JobName: "job-" + l.id, Resources: opt.Resources, Params: opt.Params,
				Option: &opt}, l.decider, "ok", at)
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
// how its attempts ended, split by who approved them, over the window only. An
// approval after an edit is counted apart, and its outcome not at all; a
// Deployment sharing a batch Job's template key is another kind, and so is a
// JobSet sharing it.
func TestKindStats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := entryOpt{at: t0.Add(time.Hour)}
		b := entryOpt{ns: "team-b", tmpl: "etl", at: t0.Add(time.Hour)}
		c := entryOpt{cat: failure.DiskFull, at: t0.Add(time.Hour)}
		dep := entryOpt{kind: failure.Deployment, at: t0.Add(time.Hour)}
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
			{id: "a10", o: a, review: true, decider: "alice", edit: true, end: Succeeded},
			{id: "old", o: old, review: true, decider: "alice", end: Succeeded},
			{id: "b1", o: b, review: true, decider: "alice", reject: true},
			{id: "c1", o: c, end: Succeeded},
			{id: "d1", o: entryOpt{ns: "team-d", at: t0.Add(time.Hour)}, review: true}, // nothing decided or ended
			{id: "e1", o: dep, review: true, decider: "alice", end: Failed},
			{id: "js1", o: entryOpt{workload: "JobSet", at: t0.Add(time.Hour)}, review: true, decider: "alice", end: Succeeded},
			{id: "job1", o: entryOpt{workload: "Job", at: t0.Add(-4 * time.Hour)}, review: true, decider: "alice"}, // "Job" is a batch Job's
		} {
			live(t, s, l)
		}
		mustRecord(t, s, rejected("kafka:x", t0.Add(time.Hour)))
		ka := KindStats{Kind: Kind{Category: failure.OOMMemory, Template: "team-a/train-llm", JobKind: failure.Training}, Approved: 2, Edited: 1, Rejected: 1,
			Reviewed: AttemptCounts{1, 1}, Automatic: AttemptCounts{2, 1}}
		kb := KindStats{Kind: Kind{Category: failure.OOMMemory, Template: "team-b/etl", JobKind: failure.Training}, Rejected: 1}
		kc := KindStats{Kind: Kind{Category: failure.DiskFull, Template: "team-a/train-llm", JobKind: failure.Training}, Automatic: AttemptCounts{1, 0}}
		ke := KindStats{Kind: Kind{Category: failure.OOMMemory, Template: "team-a/train-llm", JobKind: failure.Deployment}, Approved: 1, Reviewed: AttemptCounts{0, 1}}
		kj := KindStats{Kind: Kind{Category: failure.OOMMemory, Template: "team-a/train-llm", JobKind: failure.Training, Workload: "JobSet"},
			Approved: 1, Reviewed: AttemptCounts{1, 0}}
		tests := []struct {
			name string
			f    KindFilter
			want []KindStats
		}{
			{"window", KindFilter{Since: t0}, []KindStats{ka, ke, kj, kb, kc}},
			{"limit", KindFilter{Since: t0, Limit: 2}, []KindStats{ka, ke}},
			{"one workload", KindFilter{Since: t0, Kind: &kj.Kind}, []KindStats{kj}},
			{"one kind", KindFilter{Since: t0, Kind: &kb.Kind}, []KindStats{kb}},
			{"one job kind", KindFilter{Since: t0, Kind: &ke.Kind}, []KindStats{ke}},
			{"until", KindFilter{Since: t0.Add(-2 * time.Hour), Until: t0},
				[]KindStats{{Kind: ka.Kind, Approved: 1, Reviewed: AttemptCounts{1, 0}}}},
			{"Job is a batch Job's", KindFilter{Since: t0.Add(-5 * time.Hour), Until: t0.Add(-3 * time.Hour),
				Kind: &Kind{Category: ka.Kind.Category, Template: ka.Kind.Template, JobKind: ka.Kind.JobKind, Workload: "Job"}},
				[]KindStats{{Kind: ka.Kind, Approved: 1}}},
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

// TestGrantOutcomes: the latest fixes one grant applied, newest end first; those
// the rules applied (of the same kind), another grant's, those a person approved,
// abandoned or still running are not among them.
func TestGrantOutcomes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := entryOpt{at: t0.Add(time.Hour)}
		for _, l := range []life{
			{id: "x", o: a, end: Failed, grant: 1},
			{id: "xx", o: a, end: Succeeded, grant: 1},
			{id: "xxx", o: a, end: Failed, grant: 1},
			{id: "xxxx", o: a, end: Abandoned, grant: 1},
			{id: "run", o: a, grant: 1},
			{id: "rules", o: a, end: Succeeded},
			{id: "rules2", o: a, end: Succeeded},
			{id: "person", o: a, review: true, decider: "alice", end: Failed},
			{id: "other", o: entryOpt{cat: failure.DiskFull, at: t0.Add(time.Hour)}, end: Succeeded, grant: 2},
		} {
			live(t, s, l)
		}
		for _, tt := range []struct {
			grant int64
			limit int
			want  []bool
		}{
			{1, 10, []bool{false, true, false}},
			{1, 2, []bool{false, true}},
			{2, 10, []bool{true}},
			{3, 10, nil},
		} {
			got, err := s.GrantOutcomes(ctx, tt.grant, tt.limit)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("GrantOutcomes(%d, %d) = %v, %v; want %v", tt.grant, tt.limit, got, err, tt.want)
			}
		}
		if _, err := s.GrantOutcomes(ctx, 0, 10); err == nil {
			t.Error("GrantOutcomes(0) = nil error; want one: 0 is every fix no grant applied")
		}
	})
}

// TestEntryGrantOnlyApproved: only a fix applied on its own names the grant that
// applied it.
func TestEntryGrantOnlyApproved(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		for _, st := range []State{PendingReview, Rejected} {
			e := entry("g-"+string(st), st, entryOpt{})
			e.Grant = 3
			var ee *EntryError
			if _, err := s.Record(context.Background(), []Entry{e}); !errors.As(err, &ee) {
				t.Errorf("Record(%s with grant 3) = %v, want an *EntryError", st, err)
			}
		}
	})
}

// TestEntryWorkloadIsAnAPIKind: an entry's workload is an API kind's name or
// nothing.
func TestEntryWorkloadIsAnAPIKind(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		for i, w := range []string{"jobset", "Job Set", strings.Repeat("J", 64), "JobSet\n"} {
			e := entry(fmt.Sprintf("w-%d", i), PendingReview, entryOpt{workload: w})
			var ee *EntryError
			if _, err := s.Record(context.Background(), []Entry{e}); !errors.As(err, &ee) || !strings.Contains(err.Error(), "workload") {
				t.Errorf("Record(workload %q) = %v, want an *EntryError naming the workload", w, err)
			}
		}
	})
}

// TestFillEdited: attempts approved before the ledger kept whether they were edited
// (migration 0012 marks them unknown) are worked out when it opens, from their
// recommendation: an approval as recommended is one, an edited one is not.
func TestFillEdited(t *testing.T) {
	forEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		s := openTest(t, dsn)
		ctx := context.Background()
		a := entryOpt{at: t0.Add(time.Hour)}
		live(t, s, life{id: "as-is", o: a, review: true, decider: "alice", end: Succeeded})
		live(t, s, life{id: "edited", o: a, review: true, decider: "alice", edit: true, end: Succeeded})
		if _, err := s.w.ExecContext(ctx, "UPDATE attempts SET edited = -1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.w.ExecContext(ctx, "UPDATE attempts SET option_json = '' WHERE event_id = 'as-is'"); err != nil {
			t.Fatal(err)
		}
		s2 := openTest(t, dsn)
		got, err := s2.KindStats(ctx, KindFilter{Since: t0})
		want := []KindStats{{Kind: Kind{Category: failure.OOMMemory, Template: "team-a/train-llm", JobKind: failure.Training}, Approved: 1, Edited: 1,
			Reviewed: AttemptCounts{1, 0}}}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("KindStats after reopening = %+v, %v; want %+v", got, err, want)
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
		k := Kind{Category: failure.OOMMemory, Template: "team-a/trainer", JobKind: failure.Training}
		other := Kind{Category: failure.DiskFull, Template: "team-a/trainer", JobKind: failure.Training}
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
		// The same category, template and job kind for JobSets is another kind; "Job"
		// names the batch Jobs' kind, granted already.
		sets := k
		sets.Workload = "JobSet"
		if got, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: sets, Action: AutonomyGrant, Actor: "carol", At: t0.Add(4 * time.Minute)}); err != nil ||
			got.Kind != sets {
			t.Errorf("granting it for JobSets = %+v, %v; want a grant of its own", got, err)
		}
		jobs := k
		jobs.Workload = "Job"
		if _, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: jobs, Action: AutonomyGrant, Actor: "carol"}); !errors.Is(err, ErrConflict) {
			t.Errorf("granting it for Jobs, by name = %v, want a conflict: the Jobs' grant is in force", err)
		}
		if grants, _ := s.AutonomyGrants(ctx); len(grants) != 3 || grants[2].Kind != sets {
			t.Errorf("AutonomyGrants = %+v, want the JobSets' grant beside the Jobs'", grants)
		}
		if _, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: sets, Action: AutonomyRevoke, Actor: "carol", Reason: "back to review",
			At: t0.Add(5 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		changes, err := s.AutonomyChanges(ctx, 4)
		if err != nil || len(changes) != 4 || changes[2].Seq != 4 || changes[3].Seq != 3 || changes[3].Action != AutonomyRevoke {
			t.Errorf("AutonomyChanges(4) = %+v, %v; want seqs 6 to 3", changes, err)
		}
		want := []string{
			"alice autonomy-grant grant oom_memory on team-a/trainer (training); reviewed 12 (11 approved), outcomes 10 (9 succeeded)",
			"bob autonomy-grant grant disk_full on team-a/trainer (training) (forced past the thresholds); reason: we trust it",
			"autonomy autonomy-revoke revoke oom_memory on team-a/trainer (training); " +
				"latest automatic fixes: 5 of 10 succeeded; reason: 3 of the latest 10 automatic fixes failed",
			"alice autonomy-grant grant oom_memory on team-a/trainer (training)",
			"carol autonomy-grant grant oom_memory on team-a/trainer (training, JobSet)",
			"carol autonomy-revoke revoke oom_memory on team-a/trainer (training, JobSet); reason: back to review",
		}
		if got := autonomyAudit(t, s); !reflect.DeepEqual(got, want) {
			t.Errorf("audit =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

func TestChangeAutonomyRefuses(t *testing.T) {
	ok := AutonomyChange{Kind: Kind{Category: failure.OOMMemory, Template: "team-a/trainer", JobKind: failure.Training}, Action: AutonomyGrant, Actor: "alice"}
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
		{"no job kind", func(c *AutonomyChange) { c.Kind.JobKind = "" }, "jobKind"},
		{"bogus job kind", func(c *AutonomyChange) { c.Kind.JobKind = "cronjob" }, "jobKind"},
		{"bogus workload", func(c *AutonomyChange) { c.Kind.Workload = "jobset; DROP" }, "workload"},
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
					_, err := s.ChangeAutonomy(ctx, AutonomyChange{Kind: Kind{Category: failure.Timeout, Template: "team-a/etl", JobKind: failure.Batch}, Action: AutonomyGrant,
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

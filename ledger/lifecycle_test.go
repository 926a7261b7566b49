package ledger

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

// legal lists every legal transition.
var legal = map[[2]State]bool{
	{Received, Classified}: true, {Classified, Recommended}: true,
	{Recommended, PendingReview}: true, {Recommended, Approved}: true, {Recommended, Rejected}: true,
	{PendingReview, Approved}: true, {PendingReview, Rejected}: true,
	{Approved, Submitted}: true, {Approved, Abandoned}: true, {Approved, Rejected}: true,
	{Submitted, Succeeded}: true, {Submitted, Failed}: true, {Submitted, Abandoned}: true,
}

func TestStateMachine(t *testing.T) {
	for _, from := range states {
		for _, to := range append(states, "bogus") {
			if got, want := from.CanMoveTo(to), legal[[2]State{from, to}]; got != want {
				t.Errorf("%s.CanMoveTo(%s) = %v, want %v", from, to, got, want)
			}
		}
		final := from == Rejected || from == Succeeded || from == Failed || from == Abandoned
		if from.Final() != final {
			t.Errorf("%s.Final() = %v, want %v", from, from.Final(), final)
		}
		if from.Final() && len(transitions[from]) > 0 {
			t.Errorf("final state %s has transitions", from)
		}
	}
}

// TestTransitionsLegal walks every transition a recorded remediation can take.
func TestTransitionsLegal(t *testing.T) {
	paths := [][]State{
		{PendingReview, Approved, Submitted, Succeeded},
		{PendingReview, Rejected},
		{Approved, Submitted, Failed},
		{Approved, Submitted, Abandoned},
		{Approved, Abandoned},
	}
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for i, path := range paths {
			id := fmt.Sprintf("p%d", i)
			mustRecord(t, s, entry(id, path[0], entryOpt{}))
			at := t0
			for j := 1; j < len(path); j++ {
				at = at.Add(time.Minute)
				var err error
				if path[j-1] == PendingReview && path[j] == Approved {
					err = s.Approve(ctx, id, Attempt{Number: 2, JobName: "job-" + id}, "alice", "ok", at)
				} else {
					err = s.Transition(ctx, id, path[j-1], path[j], "remediate", "step", at)
				}
				if err != nil {
					t.Fatalf("%v: %s -> %s = %v", path, path[j-1], path[j], err)
				}
			}
			m := mustGet(t, s, id)
			last := path[len(path)-1]
			if m.State != last || !m.UpdatedAt.Equal(at) {
				t.Errorf("%v: remediation is %s updated %v, want %s at %v", path, m.State, m.UpdatedAt, last, at)
			}
			if got, want := len(m.Audit), 4+len(path)-1; got != want {
				t.Errorf("%v: %d audit rows, want %d", path, got, want)
			}
			if last == Abandoned || last == Failed {
				if a := m.Attempts[0]; a.Outcome != string(last) || !a.FinishedAt.Equal(at) {
					t.Errorf("%v: attempt outcome %q at %v, want %s at %v", path, a.Outcome, a.FinishedAt, last, at)
				}
			}
		}
	})
}

func TestTransitionErrors(t *testing.T) {
	illegal := []struct{ from, to State }{
		{PendingReview, Submitted}, {Approved, Succeeded}, {Approved, PendingReview}, {Submitted, Approved},
		{Rejected, Approved}, {Succeeded, Failed}, {Failed, Submitted}, {Abandoned, Approved},
		{Received, Approved}, {Approved, Approved}, {"bogus", Approved},
	}
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("e", Approved, entryOpt{}))
		for _, c := range illegal {
			err := s.Transition(ctx, "e", c.from, c.to, "x", "", t0)
			var te *TransitionError
			if !errors.As(err, &te) || *te != (TransitionError{ID: "e", From: c.from, To: c.to}) {
				t.Errorf("Transition(%s -> %s) = %v, want a TransitionError", c.from, c.to, err)
			}
		}
		want := fmt.Sprintf("remediation e: illegal transition from %s to %s", Approved, Succeeded)
		if got := (&TransitionError{ID: "e", From: Approved, To: Succeeded}).Error(); got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
		// A legal move from a state the remediation is no longer in.
		for _, c := range []struct{ from, to State }{{Submitted, Succeeded}, {PendingReview, Rejected}, {Received, Classified}} {
			if err := s.Transition(ctx, "e", c.from, c.to, "x", "", t0); !errors.Is(err, ErrConflict) {
				t.Errorf("stale Transition(%s -> %s) = %v, want ErrConflict", c.from, c.to, err)
			}
		}
		if err := s.Approve(ctx, "e", Attempt{Number: 9, JobName: "j9"}, "x", "", t0); !errors.Is(err, ErrConflict) {
			t.Errorf("Approve of an approved remediation = %v, want ErrConflict", err)
		}
		if err := s.Transition(ctx, "nope", Approved, Submitted, "x", "", t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("Transition(unknown id) = %v, want ErrNotFound", err)
		}
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(unknown id) = %v, want ErrNotFound", err)
		}
		if m := mustGet(t, s, "e"); m.State != Approved || len(m.Audit) != 4 {
			t.Errorf("after refused moves e is %s with %d audit rows, want approved with 4", m.State, len(m.Audit))
		}
	})
}

func TestApproveFinishGet(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		// The chain's first retry (attempt 2) failed; its event asks for a review.
		first := entry("e1", Approved, entryOpt{chain: "ch", tmpl: "bert"})
		second := entry("e2", PendingReview, entryOpt{chain: "ch", tmpl: "bert", attempt: 2, at: t0.Add(time.Hour)})
		mustRecord(t, s, first, second)
		a := Attempt{Number: 3, JobName: "bert-af3", Resources: failure.Resources{MemoryBytes: 64 << 30},
			Params: map[string]string{"batch_size": "32"}}
		if err := s.Approve(ctx, "e2", Attempt{Number: 2, JobName: "other"}, "alice", "", t0); !errors.Is(err, ErrConflict) {
			t.Errorf("Approve with a taken attempt number = %v, want ErrConflict", err)
		}
		if err := s.Approve(ctx, "e2", Attempt{Number: 3, JobName: first.Attempt.JobName}, "alice", "", t0); !errors.Is(err, ErrConflict) {
			t.Errorf("Approve with a taken job name = %v, want ErrConflict", err)
		}
		t1, t2, t3 := t0.Add(2*time.Hour), t0.Add(3*time.Hour), t0.Add(5*time.Hour)
		if err := s.Approve(ctx, "e2", a, "alice", "smaller batch", t1); err != nil {
			t.Fatalf("Approve = %v", err)
		}
		if err := s.Transition(ctx, "e2", Approved, Submitted, "remediate", "created bert-af3", t2); err != nil {
			t.Fatalf("Transition to submitted = %v", err)
		}
		if err := s.Finish(ctx, "e2", Submitted, failure.Outcome{}, "remediate", "", t3); err == nil {
			t.Error("Finish to submitted succeeded, want a TransitionError")
		}
		won := failure.Outcome{Attempt: 3, Resources: a.Resources, Params: a.Params, DurationSeconds: 7000, Cost: 9.5}
		if err := s.Finish(ctx, "e2", Succeeded, won, "remediate", "job complete", t3); err != nil {
			t.Fatalf("Finish = %v", err)
		}
		m := mustGet(t, s, "e2")
		if m.State != Succeeded {
			t.Errorf("e2 is %s, want succeeded", m.State)
		}
		wantAttempts := []Attempt{
			{ChainID: "ch", Number: 2, EventID: "e1", JobName: first.Attempt.JobName, Namespace: "team-a", Resources: first.Attempt.Resources, Params: first.Attempt.Params},
			{ChainID: "ch", Number: 3, EventID: "e2", JobName: "bert-af3", Namespace: "team-a", Resources: a.Resources, Params: a.Params,
				SubmittedAt: t2, Outcome: "succeeded", FinishedAt: t3},
		}
		if len(m.Attempts) == 2 && (len(m.Attempts[0].Token) != 32 || m.Attempts[0].Token == m.Attempts[1].Token) {
			t.Errorf("attempt tokens %q, %q: want two random 32-hex-digit tokens", m.Attempts[0].Token, m.Attempts[1].Token)
		}
		for i := range m.Attempts {
			m.Attempts[i].Token = ""
		}
		if !reflect.DeepEqual(m.Attempts, wantAttempts) {
			t.Errorf("attempts =\n%+v\nwant\n%+v", m.Attempts, wantAttempts)
		}
		wantAudit := []AuditEntry{
			{At: t0.Add(time.Hour), Actor: "autofix", Action: "receive", To: Received, Detail: "from failures/2@1000"},
			{At: t0.Add(time.Hour), Actor: "autofix", Action: "classify", From: Received, To: Classified, Detail: "oom_memory (confidence 0.93)"},
			{At: t0.Add(time.Hour), Actor: "autofix", Action: "recommend", From: Classified, To: Recommended, Detail: "retry: memory 32Gi -> 48Gi"},
			{At: t0.Add(time.Hour), Actor: "policy", Action: "decide", From: Recommended, To: PendingReview, Detail: second.Reason},
			{At: t1, Actor: "alice", Action: "approve", From: PendingReview, To: Approved, Detail: "smaller batch"},
			{At: t2, Actor: "remediate", Action: "transition", From: Approved, To: Submitted, Detail: "created bert-af3"},
			{At: t3, Actor: "remediate", Action: "finish", From: Submitted, To: Succeeded, Detail: "job complete"},
		}
		if !reflect.DeepEqual(m.Audit, wantAudit) {
			t.Errorf("audit =\n%+v\nwant\n%+v", m.Audit, wantAudit)
		}
		h, err := s.History(ctx, []string{"team-a/bert"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := h["team-a/bert"]
		won.Template, won.Succeeded = "bert", true
		if len(got) != 3 || got[0].Attempt != 1 || got[1].Attempt != 2 || !reflect.DeepEqual(got[2], won) {
			t.Errorf("History = %+v, want the failures of attempts 1 and 2, then %+v", got, won)
		}
		chains, err := s.ChainAttempts(ctx, []string{"ch", "none"})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"ch": 3, "none": 0}; !reflect.DeepEqual(chains, want) {
			t.Errorf("ChainAttempts = %v, want %v", chains, want)
		}
	})
}

func TestRejectAndPaused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("e", PendingReview, entryOpt{}))
		if err := s.Reject(ctx, "e", "bob", "too expensive", t0); err != nil {
			t.Fatalf("Reject = %v", err)
		}
		if m := mustGet(t, s, "e"); m.State != Rejected || m.Audit[4].Actor != "bob" {
			t.Errorf("after Reject e is %s, audit %+v", m.State, m.Audit)
		}
		for i, want := range []bool{true, true, false} {
			if err := s.SetPaused(ctx, want, "oncall", fmt.Sprintf("change %d", i), t0.Add(time.Duration(i)*time.Minute)); err != nil {
				t.Fatalf("SetPaused(%v) = %v", want, err)
			}
			if got, err := s.Paused(ctx); err != nil || got != want {
				t.Errorf("Paused() = %v, %v; want %v", got, err, want)
			}
		}
		var n int
		if err := s.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM audit WHERE event_id = '' AND actor = 'oncall'").Scan(&n); err != nil || n != 3 {
			t.Errorf("settings audit rows = %d, %v; want 3", n, err)
		}
	})
}

func TestPausedDefault(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		if got, err := s.Paused(context.Background()); err != nil || got {
			t.Errorf("Paused() on a new ledger = %v, %v; want false", got, err)
		}
	})
}

func TestApprovers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("auto", Approved, entryOpt{chain: "a"}), entry("manual", PendingReview, entryOpt{chain: "m"}),
			entry("waiting", PendingReview, entryOpt{chain: "w"}))
		if err := s.Approve(ctx, "manual", Attempt{Number: 2, JobName: "job-manual"}, "alice", "", t0); err != nil {
			t.Fatal(err)
		}
		got, err := s.Approvers(ctx, []string{"auto", "manual", "waiting", "none"})
		if want := map[string]string{"manual": "alice"}; err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Approvers = %v, %v; want %v", got, err, want)
		}
		if got, err := s.Approvers(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("Approvers(nil) = %v, %v; want none", got, err)
		}
	})
}

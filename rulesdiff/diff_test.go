package rulesdiff

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// fixed classifies each event by its id, as its table says (unknown otherwise).
type fixed map[string]failure.Classification

func (f fixed) ClassifyContext(ctx context.Context, ev *failure.Event) (failure.Classification, []classifier.RuleError, error) {
	if err := ctx.Err(); err != nil {
		return failure.Classification{}, nil, err
	}
	if cl, ok := f[ev.ID]; ok {
		return cl, nil, nil
	}
	return failure.Classification{Category: failure.Unknown, Action: failure.NoRetry}, nil, nil
}

// failing fails rule "bad" on every event.
type failing struct{ fixed }

func (f failing) ClassifyContext(ctx context.Context, ev *failure.Event) (failure.Classification, []classifier.RuleError, error) {
	cl, _, err := f.fixed.ClassifyContext(ctx, ev)
	return cl, []classifier.RuleError{{Rule: "bad", Err: errors.New("boom")}}, err
}

func cls(cat failure.Category, retry bool, action failure.Action, conf float64) failure.Classification {
	return failure.Classification{Category: cat, Retryable: retry, Action: action, Confidence: conf, Rules: []string{"r-" + string(cat)}}
}

func remediation(id string) *ledger.Remediation {
	return &ledger.Remediation{EventID: id, ReceivedAt: time.Unix(1_700_000_000, 0).UTC(), Category: failure.OOMMemory,
		Event: &failure.Event{ID: id, Job: failure.Job{Namespace: "ml", Name: "job-" + id}}}
}

func TestDiffCountsEachKindOfChange(t *testing.T) {
	oom := cls(failure.OOMMemory, true, failure.IncreaseMemory, 0.97)
	current := fixed{
		"same": oom, "confidence": oom, "to-code": oom, "to-preempted": oom, "action": oom,
		"to-oom": cls(failure.UserCode, false, failure.NoRetry, 0.9), "other-to-code": cls(failure.Timeout, true, failure.ExtendTimeout, 0.9),
	}
	lessSure := oom
	lessSure.Confidence = 0.6
	otherAction := oom
	otherAction.Action = failure.RetryBackoff
	candidate := fixed{
		"same": oom, "confidence": lessSure, "to-code": cls(failure.UserCode, false, failure.NoRetry, 0.9),
		"to-preempted": cls(failure.Preempted, true, failure.RetryBackoff, 0.95), "action": otherAction, "to-oom": oom,
		"other-to-code": cls(failure.UserCode, false, failure.NoRetry, 0.9),
	}
	d := New(current, candidate)
	ids := []string{"same", "confidence", "to-code", "to-preempted", "action", "to-oom", "other-to-code"}
	for _, id := range ids {
		if err := d.Add(t.Context(), remediation(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Add(t.Context(), &ledger.Remediation{EventID: "kafka:t/0/1", State: ledger.Rejected}); err != nil {
		t.Fatal(err)
	}
	rep := d.Report()
	want := Summary{Replayed: 7, Skipped: 1, Changed: 5, CategoryChanges: 4, RetryChanges: 3, NewlyRetried: 1, NoLongerRetried: 2, ActionChanges: 5}
	if rep.Summary != want {
		t.Errorf("summary = %+v, want %+v", rep.Summary, want)
	}
	var changed []string
	for _, c := range rep.Changes {
		changed = append(changed, c.ID)
	}
	if w := []string{"to-code", "to-preempted", "action", "to-oom", "other-to-code"}; !reflect.DeepEqual(changed, w) {
		t.Errorf("changed events = %v, want %v (in the order replayed; not a change of confidence alone)", changed, w)
	}
	wantMatrix := []Cell{
		{failure.OOMMemory, failure.Preempted, 1}, {failure.OOMMemory, failure.UserCode, 1},
		{failure.Timeout, failure.UserCode, 1}, {failure.UserCode, failure.OOMMemory, 1},
	}
	if !reflect.DeepEqual(rep.Matrix, wantMatrix) {
		t.Errorf("matrix = %v, want %v", rep.Matrix, wantMatrix)
	}
	c := rep.Changes[0]
	wantChange := Change{ID: "to-code", Job: "ml/job-to-code", ReceivedAt: time.Unix(1_700_000_000, 0).UTC(), Recorded: failure.OOMMemory,
		Current:   Verdict{Category: failure.OOMMemory, Retryable: true, Action: failure.IncreaseMemory, Confidence: 0.97, Rules: []string{"r-oom_memory"}},
		Candidate: Verdict{Category: failure.UserCode, Retryable: false, Action: failure.NoRetry, Confidence: 0.9, Rules: []string{"r-user_code"}}}
	if !reflect.DeepEqual(c, wantChange) {
		t.Errorf("change = %+v, want %+v", c, wantChange)
	}
}

func TestDiffMatrixIsMostFrequentFirst(t *testing.T) {
	current, candidate := fixed{}, fixed{}
	for i, id := range []string{"a", "b", "c"} {
		current[id] = cls(failure.Timeout, true, failure.ExtendTimeout, 0.9)
		candidate[id] = cls(failure.UserCode, false, failure.NoRetry, 0.9)
		if i == 0 {
			candidate[id] = cls(failure.DataError, false, failure.NoRetry, 0.9)
		}
	}
	d := New(current, candidate)
	for _, id := range []string{"a", "b", "c"} {
		if err := d.Add(t.Context(), remediation(id)); err != nil {
			t.Fatal(err)
		}
	}
	want := []Cell{{failure.Timeout, failure.UserCode, 2}, {failure.Timeout, failure.DataError, 1}}
	if got := d.Report().Matrix; !reflect.DeepEqual(got, want) {
		t.Errorf("matrix = %v, want %v", got, want)
	}
}

func TestDiffReportsCandidateRuleErrorsOnce(t *testing.T) {
	d := New(fixed{}, failing{fixed{}})
	for _, id := range []string{"a", "b"} {
		if err := d.Add(t.Context(), remediation(id)); err != nil {
			t.Fatal(err)
		}
	}
	rep := d.Report()
	if rep.Summary.RuleErrorEvents != 2 || !reflect.DeepEqual(rep.RuleErrors, []string{"rule bad: boom"}) {
		t.Errorf("rule errors = %d events, %q; want 2 events, [rule bad: boom]", rep.Summary.RuleErrorEvents, rep.RuleErrors)
	}
	if rep.Summary.Changed != 0 || len(rep.Changes) != 0 || rep.Matrix == nil || rep.Changes == nil {
		t.Errorf("report = %+v, want no change, with empty (not null) lists", rep)
	}
}

func TestDiffStopsWhenTheContextIsDone(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := New(fixed{}, fixed{}).Add(ctx, remediation("a"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Add after cancel = %v, want context.Canceled", err)
	}
}

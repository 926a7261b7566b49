package review

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// oomEvent failed with 8 CPUs and 16 GiB.
const oomEvent = `{"id":"ev-oom-1","time":"2026-11-25T10:00:00Z","source":"kubernetes","job":{"namespace":"ml","name":"resnet50-train-7",` +
	`"template":"resnet50-train","kind":"training","attempt":1,"image":"registry.local/train:1.4","resources":{"cpu":"8","memory":"16Gi"},` +
	`"params":{"micro_batch_size":"16"},"tunables":{"micro_batch_size":{"role":"micro_batch","min":1,"max":64},` +
	`"precision":{"role":"precision","values":["fp32","bf16"]}}},` +
	`"failure":{"reason":"OOMKilled","exitCode":137,"durationSeconds":1834,"node":"node-3","logTail":"epoch 3","usage":{"peakMemory":"15.9Gi"}}}`

var at = time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)

// fixture is a Service on a real SQLite ledger, the default catalogue and policy
// (cost cap 4x, 5 attempts), and a largest node that a test may change.
type fixture struct {
	t       *testing.T
	svc     *Service
	store   *ledger.Store
	policy  *policy.Config
	largest failure.Resources
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store, err := ledger.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	pol := policy.Default()
	f := &fixture{t: t, store: store, policy: &pol, largest: failure.Resources{MemoryBytes: 512 << 30, CPUMillis: 64000, GPU: 8}}
	f.svc, err = New(Options{Ledger: store, Policy: &pol, Catalogue: failure.DefaultCatalogue(),
		Largest: func() failure.Resources { return f.largest }, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// event is oomEvent with the id and the attempt given.
func event(t *testing.T, id string, attempt int) failure.Event {
	t.Helper()
	ev, err := failure.Decode([]byte(oomEvent))
	if err != nil {
		t.Fatal(err)
	}
	ev.ID, ev.Job.Attempt = id, attempt
	return ev
}

// twoOptions: the chosen option 0 (24 GiB, 1.5x, with a deadline, a delay and a
// node to avoid), option 1 on the front (32 GiB, 2x), option 2 off it.
func twoOptions() failure.Recommendation {
	return failure.Recommendation{Retry: true, Chosen: 0,
		Classification: failure.Classification{Category: failure.OOMMemory, Retryable: true, Confidence: 0.9, Action: failure.IncreaseMemory},
		Options: []failure.Option{
			{Resources: failure.Resources{CPUMillis: 8000, MemoryBytes: 24 << 30}, DeadlineSeconds: 3600, DelaySeconds: 300,
				AvoidNodes: []string{"gpu-node-3"}, Changes: []string{"memory 16Gi -> 24Gi", "deadline -> 1h"}, Pareto: true,
				PSuccess: 0.9, PFix: 0.9, CostMultiple: 1.5},
			{Resources: failure.Resources{CPUMillis: 8000, MemoryBytes: 32 << 30}, DeadlineSeconds: 7200,
				Changes: []string{"memory 16Gi -> 32Gi", "deadline -> 2h"}, Pareto: true, PSuccess: 0.97, PFix: 0.97, CostMultiple: 2},
			{Resources: failure.Resources{CPUMillis: 8000, MemoryBytes: 48 << 30}, PSuccess: 0.95, PFix: 0.95, CostMultiple: 3},
		}}
}

// pending records ev as kept for review with rec, in the chain ml/<job>.
func (f *fixture) pending(ev failure.Event, rec failure.Recommendation) string {
	f.t.Helper()
	rec.EventID = ev.ID
	if _, err := f.store.Record(context.Background(), []ledger.Entry{{EventID: ev.ID, Event: &ev, ChainID: "ml/" + ev.Job.Name,
		Recommendation: &rec, State: ledger.PendingReview, Actor: "policy"}}); err != nil {
		f.t.Fatal(err)
	}
	return ev.ID
}

func (f *fixture) get(id string) ledger.Remediation {
	f.t.Helper()
	r, err := f.store.Get(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func intp(i int) *int { return &i }

// TestApproveRefusesWhatTheRulesDoNot: each refusal is a FieldError naming the
// part of the choice at fault, and records nothing.
func TestApproveRefusesWhatTheRulesDoNot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       Choice
		largest *failure.Resources
		field   string
	}{
		{"an option that does not exist", Choice{Option: intp(3)}, nil, "option"},
		{"a negative option", Choice{Option: intp(-1)}, nil, "option"},
		{"an option off the front", Choice{Option: intp(2)}, nil, "option"},
		{"a long reason", Choice{Reason: strings.Repeat("x", 1001)}, nil, "reason"},
		{"negative resources", Choice{Resources: &failure.Resources{MemoryBytes: -1}}, nil, "resources"},
		{"more memory than a node has", Choice{Resources: &failure.Resources{MemoryBytes: 600 << 30}}, nil, "resources.memory"},
		{"more CPU than a node has", Choice{Resources: &failure.Resources{CPUMillis: 65000}}, nil, "resources.cpu"},
		{"more GPUs than a node has", Choice{Resources: &failure.Resources{GPU: 9, GPUType: "nvidia-h100-80gb"}}, nil, "resources.gpu"},
		{"more disk than a node has", Choice{Resources: &failure.Resources{EphemeralStorageBytes: 2 << 40}},
			&failure.Resources{EphemeralStorageBytes: 1 << 40}, "resources.ephemeralStorage"},
		{"the largest node shrank", Choice{Resources: &failure.Resources{MemoryBytes: 40 << 30}},
			&failure.Resources{MemoryBytes: 32 << 30}, "resources.memory"},
		{"a GPU model not in the catalogue", Choice{Resources: &failure.Resources{GPU: 1, GPUType: "nvidia-b200"}}, nil, "resources.gpuType"},
		{"GPUs without a model", Choice{Resources: &failure.Resources{GPU: 1}}, nil, "resources.gpuType"},
		{"an edit over the cost cap", Choice{Resources: &failure.Resources{MemoryBytes: 400 << 30}}, nil, "resources"},
		{"a param the job does not declare", Choice{Params: map[string]string{"learning_rate": "0.1"}}, nil, "params.learning_rate"},
		{"a param over its max", Choice{Params: map[string]string{"micro_batch_size": "65"}}, nil, "params.micro_batch_size"},
		{"a param that is not a number", Choice{Params: map[string]string{"micro_batch_size": "8; rm -rf /"}}, nil, "params.micro_batch_size"},
		{"a param not among its values", Choice{Params: map[string]string{"precision": "fp8"}}, nil, "params.precision"},
		{"a param with a control character", Choice{Params: map[string]string{"precision": "bf16\n"}}, nil, "params.precision"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.largest != nil {
				f.largest = *tc.largest
			}
			id := f.pending(event(t, "ev-1", 1), twoOptions())
			_, err := f.svc.Approve(t.Context(), id, "val", tc.c)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Approve = %v, want a FieldError of %s", err, tc.field)
			}
			if r := f.get(id); r.State != ledger.PendingReview || len(r.Attempts) != 0 {
				t.Errorf("after a refusal: %s with %d attempts, want pending_review with none", r.State, len(r.Attempts))
			}
		})
	}
}

// TestApproveHoldsAnOptionToTheNodesOfNow: the nodes may have shrunk since the
// recommendation (a node pool gone, discovery's latest offer smaller): approving an
// option no node can hold any more, unedited, is refused like an edit past the
// largest node, rather than submitted to wait unschedulable. An option that fits is
// approved.
func TestApproveHoldsAnOptionToTheNodesOfNow(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       Choice
		largest failure.Resources
		wantOK  bool
	}{
		{"the chosen option, now larger than any node", Choice{}, failure.Resources{MemoryBytes: 20 << 30}, false},
		{"another option, now larger than any node", Choice{Option: intp(1)}, failure.Resources{MemoryBytes: 28 << 30}, false},
		{"a node with fewer CPUs than the option needs", Choice{}, failure.Resources{CPUMillis: 4000}, false},
		{"the chosen option, which still fits", Choice{}, failure.Resources{MemoryBytes: 28 << 30}, true},
		{"no bound known", Choice{}, failure.Resources{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.largest = tc.largest
			id := f.pending(event(t, "ev-1", 1), twoOptions())
			_, err := f.svc.Approve(t.Context(), id, "val", tc.c)
			var fe *FieldError
			switch {
			case tc.wantOK && err != nil:
				t.Errorf("Approve = %v, want it approved", err)
			case !tc.wantOK && (!errors.As(err, &fe) || fe.Field != "option" || !strings.Contains(fe.Problem, "largest node")):
				t.Errorf("Approve = %v, want a FieldError of option naming the largest node", err)
			case !tc.wantOK:
				if r := f.get(id); r.State != ledger.PendingReview || len(r.Attempts) != 0 {
					t.Errorf("after a refusal: %s with %d attempts, want pending_review with none", r.State, len(r.Attempts))
				}
			}
		})
	}
}

// TestApprovingAnotherOptionAppliesAllOfIt: a reviewer who picks option 1 gets
// option 1's deadline, nodes to avoid and delay, not the policy's choice's.
func TestApprovingAnotherOptionAppliesAllOfIt(t *testing.T) {
	f := newFixture(t)
	id := f.pending(event(t, "ev-1", 1), twoOptions())
	if _, err := f.svc.Approve(t.Context(), id, "val", Choice{Option: intp(1)}); err != nil {
		t.Fatalf("approve option 1: %v", err)
	}
	r := f.get(id)
	opt, ok := engine.AttemptOption(&r)
	if !ok || opt.Resources.MemoryBytes != 32<<30 || opt.DeadlineSeconds != 7200 || opt.DelaySeconds != 0 || len(opt.AvoidNodes) != 0 ||
		len(opt.Changes) != 2 || opt.Changes[1] != "deadline -> 2h" {
		t.Errorf("the approved attempt runs with %+v; want option 1 whole (32Gi, deadline 2h, no delay, no nodes avoided)", opt)
	}
}

// TestApproveIsHeldToTheCostCapEveryWay: picking an option over the policy's cap is
// refused, as is approving the chosen one over it, and an edit of an option whose
// run is longer (its cost is price times runtime).
func TestApproveIsHeldToTheCostCapEveryWay(t *testing.T) {
	over := twoOptions()
	over.Options[1].CostMultiple = 3.8
	long := failure.Recommendation{Retry: true, Chosen: 0,
		Classification: failure.Classification{Category: failure.Timeout, Retryable: true, Confidence: 0.9, Action: failure.ExtendTimeout},
		Options: []failure.Option{{Resources: failure.Resources{CPUMillis: 8000, MemoryBytes: 16 << 30}, DeadlineSeconds: 4 * 3600,
			RuntimeSeconds: 3.5 * 1834, Pareto: true, PSuccess: 0.9, PFix: 0.9, CostMultiple: 3.5}}}
	chosenOver := twoOptions()
	chosenOver.Options[0].CostMultiple = 3.8
	for _, tc := range []struct {
		name   string
		cap    float64
		rec    failure.Recommendation
		c      Choice
		field  string
		wantOK bool
	}{
		{"an option over the cap", 2, over, Choice{Option: intp(1)}, "option", false},
		{"the same option under a higher cap", 4, over, Choice{Option: intp(1)}, "", true},
		{"the chosen option over the cap", 2, chosenOver, Choice{}, "option", false},
		{"an edit of a long run", 4, long, Choice{Resources: &failure.Resources{MemoryBytes: 200 << 30}}, "resources", false},
		{"an edit within the cap", 4, twoOptions(), Choice{Resources: &failure.Resources{MemoryBytes: 20 << 30}}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.policy.MaxCostMultiple = tc.cap
			id := f.pending(event(t, "ev-1", 1), tc.rec)
			_, err := f.svc.Approve(t.Context(), id, "val", tc.c)
			var fe *FieldError
			switch {
			case tc.wantOK && err != nil:
				t.Errorf("Approve = %v, want it approved", err)
			case !tc.wantOK && (!errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Problem, "over the policy's cap")):
				t.Errorf("Approve = %v, want a FieldError of %s over the cap", err, tc.field)
			}
		})
	}
}

// TestApproveNumbersAttemptsAsTheEngineDoes: the attempt is the chain's next by
// engine.NextAttempt — after the attempts the ledger records, or after the event's
// own number when that is higher — and named by failure.AttemptName; past the
// policy's budget it is a conflict.
func TestApproveNumbersAttemptsAsTheEngineDoes(t *testing.T) {
	for _, tc := range []struct {
		name         string
		recorded     int // the chain's attempt already in the ledger (0: none)
		eventAttempt int
		wantNumber   int
		conflict     bool
	}{
		{"a first failure", 0, 1, 2, false},
		{"after a recorded attempt", 3, 3, 4, false},
		{"the event counts more runs", 2, 4, 5, false},
		{"the ledger counts more runs", 4, 2, 5, false},
		{"the budget spent", 5, 5, 0, true},
		{"the budget spent, by the ledger's count", 5, 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.recorded > 0 {
				prev := event(t, "ev-prev", tc.recorded-1)
				rec := twoOptions()
				rec.EventID = prev.ID
				if _, err := f.store.Record(t.Context(), []ledger.Entry{{EventID: prev.ID, Event: &prev, ChainID: "ml/" + prev.Job.Name,
					Recommendation: &rec, State: ledger.Approved, Actor: "policy", Attempt: &ledger.Attempt{Number: tc.recorded,
						JobName: failure.AttemptName(prev.Job.Name, tc.recorded), Resources: rec.Options[0].Resources}}}); err != nil {
					t.Fatal(err)
				}
			}
			id := f.pending(event(t, "ev-now", tc.eventAttempt), twoOptions())
			a, err := f.svc.Approve(t.Context(), id, "val", Choice{Reason: "looks right"})
			if tc.conflict {
				var ce *ConflictError
				if !errors.As(err, &ce) || ce.ID != id {
					t.Errorf("Approve past the budget = %v, want a ConflictError of %s", err, id)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, next := engine.NextAttempt(tc.recorded, tc.eventAttempt); a.Number != next || next != tc.wantNumber {
				t.Errorf("attempt %d, want %d (engine.NextAttempt says %d)", a.Number, tc.wantNumber, next)
			}
			if want := failure.AttemptName("resnet50-train-7", tc.wantNumber); a.JobName != want {
				t.Errorf("job %q, want %q", a.JobName, want)
			}
			r := f.get(id)
			last := r.Audit[len(r.Audit)-1]
			if r.State != ledger.Approved || last.Actor != "val" || !last.At.Equal(at) ||
				last.Detail != "approved the chosen option 0: looks right" {
				t.Errorf("after approving: %s, audit %+v; want approved by val at %s with the reason", r.State, last, at)
			}
		})
	}
}

// TestApproveRecordsTheEdits: edited resources and params replace the option's
// and are named, with the reviewer, in the attempt's changes and the audit trail.
func TestApproveRecordsTheEdits(t *testing.T) {
	f := newFixture(t)
	id := f.pending(event(t, "ev-1", 1), twoOptions())
	a, err := f.svc.Approve(t.Context(), id, "val", Choice{Reason: "peaks at 15.9Gi",
		Resources: &failure.Resources{MemoryBytes: 20 << 30}, Params: map[string]string{"precision": "bf16", "micro_batch_size": "8"}})
	if err != nil {
		t.Fatal(err)
	}
	const edits = "memory=20.0Gi, micro_batch_size=8, precision=bf16"
	if a.Resources.MemoryBytes != 20<<30 || a.Resources.CPUMillis != 8000 || a.Params["precision"] != "bf16" || a.Params["micro_batch_size"] != "8" ||
		a.Option.Changes[len(a.Option.Changes)-1] != "edited by val: "+edits {
		t.Errorf("attempt %+v, option changes %v", a, a.Option.Changes)
	}
	if last := f.get(id).Audit; last[len(last)-1].Detail != "approved the chosen option 0, edited: "+edits+": peaks at 15.9Gi" {
		t.Errorf("audit detail %q", last[len(last)-1].Detail)
	}
}

// TestDecisionsOnWhatCannotBeDecided: a remediation that is not pending review, or
// has no event, is a conflict; one that does not exist is the ledger's not found.
func TestDecisionsOnWhatCannotBeDecided(t *testing.T) {
	f := newFixture(t)
	id := f.pending(event(t, "ev-1", 1), twoOptions())
	if err := f.svc.Reject(t.Context(), id, "val", "the loader leaks"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Record(t.Context(), []ledger.Entry{{EventID: "kafka:t/0/1", State: ledger.Rejected, Error: "job.name: required", Actor: "intake"}}); err != nil {
		t.Fatal(err)
	}
	var ce *ConflictError
	for _, tc := range []struct {
		name string
		err  error
		want func(error) bool
	}{
		{"approve a rejected one", approveErr(f, id), func(err error) bool { return errors.As(err, &ce) }},
		{"reject a rejected one", f.svc.Reject(t.Context(), id, "val", "again"), func(err error) bool { return errors.As(err, &ce) }},
		{"approve a rejected message", approveErr(f, "kafka:t/0/1"), func(err error) bool { return errors.As(err, &ce) }},
		{"approve one that does not exist", approveErr(f, "nope"), func(err error) bool { return errors.Is(err, ledger.ErrNotFound) }},
		{"reject one that does not exist", f.svc.Reject(t.Context(), "nope", "val", "x"), func(err error) bool { return errors.Is(err, ledger.ErrNotFound) }},
	} {
		if !tc.want(tc.err) {
			t.Errorf("%s: %v", tc.name, tc.err)
		}
	}
	if last := f.get(id).Audit; last[len(last)-1].Actor != "val" || last[len(last)-1].Detail != "the loader leaks" {
		t.Errorf("the rejection's audit row: %+v", last[len(last)-1])
	}
}

func approveErr(f *fixture, id string) error {
	_, err := f.svc.Approve(context.Background(), id, "val", Choice{})
	return err
}

func TestRejectNeedsAReason(t *testing.T) {
	f := newFixture(t)
	id := f.pending(event(t, "ev-1", 1), twoOptions())
	for _, reason := range []string{"", "   ", strings.Repeat("x", 1001)} {
		var fe *FieldError
		if err := f.svc.Reject(t.Context(), id, "val", reason); !errors.As(err, &fe) || fe.Field != "reason" {
			t.Errorf("Reject(%.10q…) = %v, want a FieldError of reason", reason, err)
		}
	}
	if r := f.get(id); r.State != ledger.PendingReview {
		t.Errorf("after the refusals: %s, want pending_review", r.State)
	}
}

func TestNewNamesWhatIsMissing(t *testing.T) {
	_, err := New(Options{})
	for _, field := range []string{"Ledger", "Policy"} {
		if err == nil || !strings.Contains(err.Error(), field+": required") {
			t.Errorf("New(Options{}) = %v, want an error naming %s", err, field)
		}
	}
}

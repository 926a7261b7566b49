package api

import (
	"context"
	"testing"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// TestApprovingAnotherOptionAppliesAllOfIt: an approver who picks option 1 gets
// option 1's deadline, nodes to avoid and delay, not the policy's choice's. Before,
// only its resources and params were kept.
func TestApprovingAnotherOptionAppliesAllOfIt(t *testing.T) {
	e := newEnv(t)
	ev, err := failure.Decode([]byte(oomEvent))
	if err != nil {
		t.Fatal(err)
	}
	rec := failure.Recommendation{EventID: ev.ID, Retry: true, Chosen: 0,
		Classification: failure.Classification{Category: failure.OOMMemory, Retryable: true, Confidence: 0.9, Action: failure.IncreaseMemory},
		Options: []failure.Option{
			{Resources: failure.Resources{MemoryBytes: 24 << 30}, DeadlineSeconds: 3600, DelaySeconds: 300, AvoidNodes: []string{"gpu-node-3"},
				Changes: []string{"memory 16Gi -> 24Gi", "deadline -> 1h"}, Pareto: true, PSuccess: 0.9, PFix: 0.9, CostMultiple: 1.5},
			{Resources: failure.Resources{MemoryBytes: 32 << 30}, DeadlineSeconds: 7200,
				Changes: []string{"memory 16Gi -> 32Gi", "deadline -> 2h"}, Pareto: true, PSuccess: 0.97, PFix: 0.97, CostMultiple: 2},
		}}
	ctx := context.Background()
	if _, err := e.store.Record(ctx, []ledger.Entry{{EventID: ev.ID, Event: &ev, ChainID: ev.Job.Namespace + "/" + ev.Job.Name,
		Recommendation: &rec, State: ledger.PendingReview, Actor: "policy"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.store.Get(ctx, ev.ID); got.Unreadable != "" {
		t.Fatalf("unreadable: %s", got.Unreadable)
	}
	if status, b, _ := e.call("POST", "/v1/remediations/"+ev.ID+"/approve", auth.Approver, `{"option":1}`); status != 200 {
		t.Fatalf("approve option 1: %d %s", status, b)
	}
	r, err := e.store.Get(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	opt, ok := engine.AttemptOption(&r)
	if !ok || opt.Resources.MemoryBytes != 32<<30 || opt.DeadlineSeconds != 7200 || opt.DelaySeconds != 0 || len(opt.AvoidNodes) != 0 ||
		len(opt.Changes) != 2 || opt.Changes[1] != "deadline -> 2h" {
		t.Errorf("the approved attempt runs with %+v; want option 1 whole (32Gi, deadline 2h, no delay, no nodes avoided)", opt)
	}
}

// TestApproverPickHeldToTheCostCap: picking an option over the policy's cost cap is
// refused, as an edit over it is. Before, only edited resources were checked.
func TestApproverPickHeldToTheCostCap(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Policy.MaxCostMultiple = 2 })
	ev, err := failure.Decode([]byte(oomEvent))
	if err != nil {
		t.Fatal(err)
	}
	rec := failure.Recommendation{EventID: ev.ID, Retry: true, Chosen: 0,
		Classification: failure.Classification{Category: failure.OOMMemory, Retryable: true, Confidence: 0.9, Action: failure.IncreaseMemory},
		Options: []failure.Option{
			{Resources: failure.Resources{MemoryBytes: 24 << 30}, Pareto: true, PSuccess: 0.9, PFix: 0.9, CostMultiple: 1.5},
			{Resources: failure.Resources{MemoryBytes: 64 << 30}, Pareto: true, PSuccess: 0.99, PFix: 0.99, CostMultiple: 3.8},
		}}
	if _, err := e.store.Record(context.Background(), []ledger.Entry{{EventID: ev.ID, Event: &ev, ChainID: "ml/" + ev.Job.Name,
		Recommendation: &rec, State: ledger.PendingReview, Actor: "policy"}}); err != nil {
		t.Fatal(err)
	}
	status, b, _ := e.call("POST", "/v1/remediations/"+ev.ID+"/approve", auth.Approver, `{"option":1}`)
	wantError(t, status, b, 400, "option")
}

// TestApprovalsHeldToTheCostCapEveryWay: the cap holds for an edit of an option
// whose run is longer (its cost is price times runtime), and for the chosen option
// approved as it is. A second review found both getting past it.
func TestApprovalsHeldToTheCostCapEveryWay(t *testing.T) {
	record := func(e *env, rec failure.Recommendation) string {
		ev, err := failure.Decode([]byte(oomEvent)) // 8 CPU, 16Gi
		if err != nil {
			t.Fatal(err)
		}
		rec.EventID = ev.ID
		if _, err := e.store.Record(context.Background(), []ledger.Entry{{EventID: ev.ID, Event: &ev, ChainID: "ml/" + ev.Job.Name,
			Recommendation: &rec, State: ledger.PendingReview, Actor: "policy"}}); err != nil {
			t.Fatal(err)
		}
		return ev.ID
	}
	e := newEnv(t)
	id := record(e, failure.Recommendation{Retry: true, Chosen: 0,
		Classification: failure.Classification{Category: failure.Timeout, Retryable: true, Confidence: 0.9, Action: failure.ExtendTimeout},
		Options: []failure.Option{{Resources: failure.Resources{CPUMillis: 8000, MemoryBytes: 16 << 30}, DeadlineSeconds: 4 * 3600,
			RuntimeSeconds: 3.5 * 1834, Pareto: true, PSuccess: 0.9, PFix: 0.9, CostMultiple: 3.5}}})
	status, b, _ := e.call("POST", "/v1/remediations/"+id+"/approve", auth.Approver, `{"resources":{"memory":"200Gi"}}`)
	wantError(t, status, b, 400, "resources")

	e = newEnv(t, func(o *Options) { o.Policy.MaxCostMultiple = 2 })
	id = record(e, failure.Recommendation{Retry: true, Chosen: 0,
		Classification: failure.Classification{Category: failure.OOMMemory, Retryable: true, Confidence: 0.9, Action: failure.IncreaseMemory},
		Options:        []failure.Option{{Resources: failure.Resources{CPUMillis: 8000, MemoryBytes: 64 << 30}, Pareto: true, PSuccess: 0.99, PFix: 0.99, CostMultiple: 3.8}}})
	status, b, _ = e.call("POST", "/v1/remediations/"+id+"/approve", auth.Approver, `{}`)
	wantError(t, status, b, 400, "option")
}

package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// fix is a remediation for the savings panel: the failed run it answers (its attempt
// number, and the cost its event's publisher reported, 0 for none), how it ended,
// and the outcome of its attempt as the watcher measured it (nil: none recorded).
type fix struct {
	id       string
	attempt  int
	reported float64
	to       ledger.State
	outcome  *failure.Outcome
}

// record records f through its whole life and returns the cost predicted for its
// attempt (its chosen option's RunCost).
func (e *env) record(f fix) float64 {
	e.t.Helper()
	ctx := context.Background()
	ev := strings.NewReplacer(`"ev-oom-1"`, `"`+f.id+`"`, "resnet50-train-7", "train-"+f.id,
		`"attempt":1`, fmt.Sprintf(`"attempt":%d`, f.attempt)).Replace(oomEvent)
	if f.reported > 0 {
		ev = strings.Replace(ev, `"failure":{`, fmt.Sprintf(`"failure":{"cost":%g,`, f.reported), 1)
	}
	r := e.pending(ev)
	opt, ok := r.Recommendation.ChosenOption()
	if !ok || opt.RunCost <= 0 {
		e.t.Fatalf("%s: the recommendation has no priced option to retry with", f.id)
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	a := ledger.Attempt{ChainID: "chain-" + f.id, Number: f.attempt + 1, JobName: "job-" + f.id, Resources: opt.Resources}
	if err := e.store.Approve(ctx, f.id, a, "val", "", at); err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.Transition(ctx, f.id, ledger.Approved, ledger.Submitted, "dispatcher", "", at); err != nil {
		e.t.Fatal(err)
	}
	var err error
	if f.outcome != nil {
		err = e.store.Finish(ctx, f.id, f.to, *f.outcome, "watcher", "", at.Add(time.Hour))
	} else {
		err = e.store.Transition(ctx, f.id, ledger.Submitted, f.to, "watcher", "", at.Add(time.Hour))
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return opt.RunCost
}

// TestHistoryShowsMeasuredSpend: the savings panel sums what the watcher measured
// the fixes' attempts to cost, counts those it could not price (never as $0),
// predicts only for the successful retries nothing measured, and shows the costs the
// failure events reported apart, as their publishers' claim.
func TestHistoryShowsMeasuredSpend(t *testing.T) {
	priced := func(cost float64, note string) *failure.Outcome {
		return &failure.Outcome{DurationSeconds: 600, Cost: cost, Unpriced: note}
	}
	tests := []struct {
		name string
		// fixes; those named in predicted have no measured cost, and the panel
		// predicts theirs.
		fixes     []fix
		predicted []string
		want      []string
		absent    []string
	}{
		{
			name: "measured, in part, unpriced and unrecorded",
			fixes: []fix{
				{id: "whole", attempt: 1, reported: 0.4, to: ledger.Succeeded, outcome: priced(2.5, "")},
				{id: "part", attempt: 1, reported: 0.4, to: ledger.Succeeded, outcome: priced(1.25, "pod x has not ended")},
				{id: "nopod", attempt: 1, reported: 0.4, to: ledger.Succeeded, outcome: priced(0, "the Job started no pod")},
				{id: "old", attempt: 1, reported: 0.4, to: ledger.Succeeded},
				{id: "broke", attempt: 1, reported: 0.4, to: ledger.Failed, outcome: priced(3, "")},
				{id: "broke-unpriced", attempt: 1, to: ledger.Failed, outcome: priced(0, "no price catalogue to price it with")},
				// The run it answers is an attempt autofix ran: its cost is that
				// attempt's outcome, not the 5 dollars its event claims.
				{id: "second", attempt: 2, reported: 5, to: ledger.Succeeded, outcome: priced(0.75, "")},
			},
			predicted: []string{"nopod", "old"},
			want: []string{
				`<b id="spent">$4.50</b>`,
				`compute of the successful retries, measured over 3 of 5 (1 priced only in part: at least that); 2 unpriced, %s predicted for 2 of them</span>`,
				`<b id="wasted">$3.00</b>`,
				`compute of the retries that failed, measured over 1 of 2; 1 unpriced</span>`,
				`The publishers of the failure events reported $2.00 for 5 of the 6 failed runs these fixes answered`,
			},
			absent: []string{"reported $7.00", "of the 7 failed runs"},
		},
		{
			name: "nothing priced",
			fixes: []fix{
				{id: "a", attempt: 1, to: ledger.Succeeded, outcome: priced(0, "the Job started no pod")},
				{id: "b", attempt: 1, to: ledger.Succeeded},
				{id: "c", attempt: 1, to: ledger.Failed, outcome: priced(0, "the Job started no pod")},
			},
			predicted: []string{"a", "b"},
			want: []string{
				`<b id="spent">unpriced</b>`,
				`measured over 0 of 2; 2 unpriced, %s predicted for 2 of them</span>`,
				`<b id="wasted">unpriced</b>`,
				`measured over 0 of 1; 1 unpriced</span>`,
				`None of the 3 failed runs these fixes answered`,
			},
			absent: []string{"$0.00"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			predict := map[string]bool{}
			for _, id := range tt.predicted {
				predict[id] = true
			}
			var predicted float64
			for _, f := range tt.fixes {
				if cost := e.record(f); predict[f.id] {
					predicted += cost
				}
			}
			status, page := e.page(e.login(auth.Viewer), "/ui/history")
			if status != http.StatusOK {
				t.Fatalf("GET /ui/history: %d", status)
			}
			start, end := strings.Index(page, "Savings so far"), strings.Index(page, "Recent fixes")
			if start < 0 || end < start {
				t.Fatalf("the history page has no savings panel:\n%s", page)
			}
			panel := strings.Join(strings.Fields(page[start:end]), " ")
			for _, w := range tt.want {
				if strings.Contains(w, "%s") {
					w = fmt.Sprintf(w, fmt.Sprintf("$%.2f", predicted))
				}
				if !strings.Contains(panel, w) {
					t.Errorf("the savings panel lacks %q:\n%s", w, panel)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(panel, a) {
					t.Errorf("the savings panel shows %q:\n%s", a, panel)
				}
			}
		})
	}
}

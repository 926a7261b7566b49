package api

import (
	"context"

	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// savings sums up what autofix did on its own, over the latest Window fixes that
// ended (Capped: there were more).
//
// Dollars shown as measured come from autofix's own records only: the outcome the
// watcher priced when an attempt's own Job ended (ledger.Store.AttemptOutcomes). A
// failed run's cost in its failure event is its publisher's claim, which verifying
// the event against the cluster does not check (the cluster's description replaces
// the event's job, not its signals): it is summed apart, as Reported, and never
// added to a measured figure (docs/security.md).
type savings struct {
	Fixed, Failed, Automatic, Reviewed int
	FixRate                            float64
	HoursSaved                         float64
	Minutes                            int
	Window                             int
	Capped                             bool

	// Retries is what the successful retries cost, as measured.
	Retries spend
	// Predicted is the predicted cost (the option's RunCost) of the successful
	// retries that have no measured cost, PredictedFor of them (those with a
	// prediction): the prediction stands in only where nothing was measured.
	Predicted    float64
	PredictedFor int
	// Wasted is what the retries that failed cost, as measured. A failed run is not
	// guessed at: one with no measured cost is counted unpriced.
	Wasted spend
	// Runs is how many of the failed runs the fixes answered were not autofix's own
	// attempts (those are in Wasted, from the fix that ran them); ReportedFor of them
	// came with a cost, Reported in all, as their events' publishers reported it.
	Runs, ReportedFor int
	Reported          float64
	// Forecast is what was predicted for every successful retry before it ran, and
	// Original for the same runs at the failed configurations (RunCost over
	// CostMultiple).
	Forecast, Original float64
}

// spend is what some attempts cost as autofix measured them: Dollars over the Priced
// ones, Partly of which were priced only in part (Dollars is at least what they
// cost); Unpriced have no measured cost at all.
type spend struct {
	Dollars                  float64
	Priced, Partly, Unpriced int
}

// Measured reports whether Dollars stands for something: some attempt was priced,
// or none was left unpriced. An unpriced attempt is never shown as $0.
func (s spend) Measured() bool { return s.Priced > 0 || s.Unpriced == 0 }

// add counts the attempt whose outcome is o (ok false: none recorded) and reports
// whether it was priced. An outcome with no cost is unpriced, whatever its note
// says: one recorded before attempts were priced has neither, and a run that held
// resources for a second or more costs more than $0 at any catalogue's prices.
func (s *spend) add(o failure.Outcome, ok bool) bool {
	if !ok || o.Cost <= 0 {
		s.Unpriced++
		return false
	}
	s.Dollars += o.Cost
	s.Priced++
	if o.Unpriced != "" {
		s.Partly++
	}
	return true
}

// savings reads the latest savingsWindow fixes that ended, who approved them and
// what their attempts cost: three bounded queries, whatever the ledger holds.
func (u *ui) savings(ctx context.Context) (savings, error) {
	sv := savings{Minutes: manualRetryMinutes}
	ended, err := u.history.List(ctx, ledger.Filter{States: []ledger.State{ledger.Succeeded, ledger.Failed}, Limit: u.savingsWindow})
	if err != nil {
		return sv, err
	}
	ids := make([]string, len(ended))
	for i, r := range ended {
		ids[i] = r.EventID
	}
	approvers, err := u.history.Approvers(ctx, ids)
	if err != nil {
		return sv, err
	}
	outcomes, err := u.history.AttemptOutcomes(ctx, ids)
	if err != nil {
		return sv, err
	}
	for i := range ended {
		r := &ended[i]
		o, measured := outcomes[r.EventID]
		opt, predicted := ranOption(r)
		if r.State == ledger.Succeeded {
			sv.Fixed++
			if !sv.Retries.add(o, measured) && predicted {
				sv.Predicted += opt.RunCost
				sv.PredictedFor++
			}
			if predicted && opt.CostMultiple > 0 {
				sv.Forecast += opt.RunCost
				sv.Original += opt.RunCost / opt.CostMultiple
			}
		} else {
			sv.Failed++
			sv.Wasted.add(o, measured)
		}
		if _, ok := approvers[r.EventID]; ok {
			sv.Reviewed++
		} else {
			sv.Automatic++
		}
		if !autofixRun(r) {
			sv.Runs++
			if r.Event != nil && r.Event.Failure.Cost > 0 {
				sv.Reported += r.Event.Failure.Cost
				sv.ReportedFor++
			}
		}
	}
	if sv.Fixed+sv.Failed > 0 {
		sv.FixRate = float64(sv.Fixed) / float64(sv.Fixed+sv.Failed)
	}
	sv.HoursSaved = float64(sv.Automatic*manualRetryMinutes) / 60
	sv.Window, sv.Capped = len(ended), len(ended) == u.savingsWindow
	return sv, nil
}

// ranOption is the option r's attempt ran with, as predicted when it was chosen: the
// attempt's own (an approver may have picked another), else the recommendation's.
func ranOption(r *ledger.Remediation) (failure.Option, bool) {
	if opt, ok := engine.AttemptOption(r); ok {
		return opt, opt.RunCost > 0
	}
	if r.Recommendation == nil {
		return failure.Option{}, false
	}
	opt, ok := r.Recommendation.ChosenOption()
	return opt, ok && opt.RunCost > 0
}

// autofixRun reports whether the failed run r answered is an attempt autofix ran
// itself: the ledger numbers a Job's run past 1 only when it holds an attempt of
// that Job (engine.Intake's chains; a Deployment's number is its generation). Its
// cost is that attempt's outcome, counted with the fix that ran it.
func autofixRun(r *ledger.Remediation) bool {
	return r.Kind != string(failure.Deployment) && r.Attempt > 1
}

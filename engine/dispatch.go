package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// ErrCannotSubmit says, wrapped in a Remediator's error, that the remediation can never be
// submitted: the dispatcher abandons it instead of retrying.
var ErrCannotSubmit = errors.New("cannot be submitted")

// Remediator submits one approved remediation's attempt to the cluster.
type Remediator interface {
	// Submit creates the attempt's job. It must be idempotent: submitting an attempt
	// whose job already exists succeeds without creating another. An error wrapping
	// ErrUnverified (the cluster does not bear the failure out) rejects the
	// remediation; one wrapping ErrCannotSubmit abandons it; any other is retried,
	// MaxSubmitFailures times at most.
	Submit(ctx context.Context, r *ledger.Remediation) error
}

// DispatchLedger is what the Dispatcher needs of the ledger.
type DispatchLedger interface {
	Approved(ctx context.Context, limit int, now time.Time) ([]ledger.Remediation, error)
	Claim(ctx context.Context, id, owner string, now, until time.Time) (bool, int, error)
	Defer(ctx context.Context, id, owner string, retryAt time.Time, failed bool, detail string) error
	Transition(ctx context.Context, id string, from, to ledger.State, actor, detail string, at time.Time) error
	Paused(ctx context.Context) (bool, error)
}

// Dispatcher submits approved remediations, oldest first.
type Dispatcher struct {
	Ledger     DispatchLedger
	Remediator Remediator
	// Limiter is the global rate limit on submissions.
	Limiter *policy.Limiter
	// DryRun abandons approved remediations instead of submitting them.
	DryRun bool
	// Interval is how often the ledger is polled when there is nothing to do (default
	// 200 ms): what is approved elsewhere (another replica) waits for it, what Wake
	// announces does not.
	Interval time.Duration
	// MaxBackoff caps the wait before a remediation whose submission failed is tried
	// again (default 1 minute); other remediations go on meanwhile.
	MaxBackoff time.Duration
	// MaxSubmitFailures is how many failed submissions of one attempt abandon it
	// (default 10: with the backoff, about five minutes of trying).
	MaxSubmitFailures int
	// Owner names this dispatcher in submission claims (default host name and pid).
	Owner string
	Now   func() time.Time
	Log   *slog.Logger

	wakeOnce sync.Once
	wakeCh   chan struct{}
}

// claimFor is how long a claim keeps other dispatchers off an attempt while its
// submission is in flight. A submission gets half of it; if the dispatcher dies
// meanwhile, another submits the attempt once the claim lapses (a job created just
// before the crash makes that a no-op: names are deterministic).
const claimFor = 30 * time.Second

// Run dispatches until ctx is cancelled: at once when woken (Wake), and every
// Interval otherwise.
func (d *Dispatcher) Run(ctx context.Context) error {
	interval := d.Interval
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	wake := d.wake()
	for {
		busy, err := d.Once(ctx)
		if err != nil && ctx.Err() == nil {
			d.log().Warn("dispatch", "err", err)
		}
		if busy {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-wake:
		}
	}
}

// Wake makes Run look for approved remediations now rather than at its next tick:
// call it when one was approved in this process (the intake's decision, an
// approval through the API), so that its submission does not wait out the
// interval. It never blocks; wakes that come while Run is busy make one more look.
// Approvals in other processes are found by the polling alone.
func (d *Dispatcher) Wake() {
	select {
	case d.wake() <- struct{}{}:
	default: // a look is already due
	}
}

func (d *Dispatcher) wake() chan struct{} {
	d.wakeOnce.Do(func() { d.wakeCh = make(chan struct{}, 1) })
	return d.wakeCh
}

// Once submits what is approved and due. It reports whether it did anything, so the
// caller can go again at once.
func (d *Dispatcher) Once(ctx context.Context) (bool, error) {
	todo, err := d.Ledger.Approved(ctx, 200, d.now())
	if err != nil {
		return false, fmt.Errorf("list approved remediations: %w", err)
	}
	busy := false
	for i := range todo {
		r := &todo[i]
		// The kill switch is read before every submission, so it takes effect at once;
		// it holds every submission, approved by whoever.
		paused, err := d.Ledger.Paused(ctx)
		if err != nil {
			return busy, fmt.Errorf("read the kill switch: %w", err)
		}
		if paused {
			return busy, nil
		}
		did, err := d.dispatch(ctx, r)
		if err != nil {
			return busy, err
		}
		busy = busy || did
	}
	return busy, nil
}

// dispatch submits r if it is due and this dispatcher gets its claim, and records
// what came of it. It reports whether it moved r. A limiter token is spent only on
// a submission that went through.
func (d *Dispatcher) dispatch(ctx context.Context, r *ledger.Remediation) (bool, error) {
	switch {
	case r.Unreadable != "":
		return true, d.move(ctx, r, ledger.Abandoned, "cannot be acted on: "+r.Unreadable)
	case d.DryRun:
		return true, d.move(ctx, r, ledger.Abandoned, "dry-run: decided and recorded, not submitted")
	}
	now := d.now()
	owner := d.owner()
	if due := dueAt(r); now.Before(due) {
		// The fix asks to wait (a backoff, capacity to free up): hold the attempt
		// until then; no dispatcher sees it before.
		_, _, err := d.Ledger.Claim(ctx, r.EventID, owner, now, due)
		return false, err
	}
	if d.Limiter != nil {
		if ok, wait := d.Limiter.Available(now); !ok {
			d.sleep(ctx, wait)
			return false, nil
		}
	}
	claimed, failures, err := d.Ledger.Claim(ctx, r.EventID, owner, now, now.Add(claimFor))
	if err != nil || !claimed {
		return false, err // another dispatcher has it, or it was moved meanwhile
	}
	sctx, cancel := context.WithTimeout(ctx, claimFor/2)
	err = d.Remediator.Submit(sctx, r)
	cancel()
	switch {
	case err == nil:
		if d.Limiter != nil {
			d.Limiter.Take(d.now())
		}
		return true, d.move(ctx, r, ledger.Submitted, "submitted "+attemptJob(r))
	case errors.Is(err, ErrUnverified):
		d.log().Warn("remediation rejected: the cluster does not bear its failure out", "remediation", r.EventID, "err", err)
		return true, d.moveAs(ctx, r, ledger.Rejected, ActorVerifier, err.Error())
	case errors.Is(err, ErrCannotSubmit):
		d.log().Warn("remediation abandoned", "remediation", r.EventID, "err", err)
		return true, d.move(ctx, r, ledger.Abandoned, "cannot be submitted: "+err.Error())
	case failures+1 >= d.maxSubmitFailures():
		d.log().Warn("remediation abandoned after failed submissions", "remediation", r.EventID, "failures", failures+1, "err", err)
		return true, d.move(ctx, r, ledger.Abandoned, fmt.Sprintf("gave up after %d failed submissions; the last: %v", failures+1, err))
	}
	wait := min(time.Second<<min(failures, 16), d.maxBackoff())
	if derr := d.Ledger.Defer(ctx, r.EventID, owner, now.Add(wait), true, fmt.Sprintf("submission %d failed: %v", failures+1, err)); derr != nil {
		return false, derr
	}
	d.log().Warn("submission failed; will retry", "remediation", r.EventID, "err", err, "in", wait, "failures", failures+1)
	return false, nil
}

func (d *Dispatcher) move(ctx context.Context, r *ledger.Remediation, to ledger.State, detail string) error {
	return d.moveAs(ctx, r, to, ActorDispatcher, detail)
}

func (d *Dispatcher) moveAs(ctx context.Context, r *ledger.Remediation, to ledger.State, actor, detail string) error {
	err := d.Ledger.Transition(ctx, r.EventID, ledger.Approved, to, actor, detail, d.now())
	if errors.Is(err, ledger.ErrConflict) {
		return nil // another replica got there first
	}
	return err
}

// dueAt is when r may be submitted: its receipt plus the delay of the option its
// attempt runs with.
func dueAt(r *ledger.Remediation) time.Time {
	opt, ok := AttemptOption(r)
	if !ok || opt.DelaySeconds <= 0 {
		return time.Time{}
	}
	return r.ReceivedAt.Add(time.Duration(min(opt.DelaySeconds, 7*24*3600) * float64(time.Second)))
}

// AttemptOption is the whole option r's attempt runs with: the one recorded with the
// attempt (an approver may have picked another, or edited it), or, for attempts
// recorded before options were kept, the recommendation's chosen one with the
// attempt's resources and params.
func AttemptOption(r *ledger.Remediation) (failure.Option, bool) {
	a, ok := OwnAttempt(r)
	if !ok {
		return failure.Option{}, false
	}
	if a.Option != nil {
		opt := *a.Option
		opt.Resources, opt.Params = a.Resources, a.Params
		return opt, true
	}
	var opt failure.Option
	if r.Recommendation != nil {
		opt, _ = r.Recommendation.ChosenOption()
	}
	opt.Resources, opt.Params = a.Resources, a.Params
	return opt, true
}

func attemptJob(r *ledger.Remediation) string {
	a, _ := OwnAttempt(r)
	return a.JobName
}

func (d *Dispatcher) sleep(ctx context.Context, wait time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(wait):
	}
}

func (d *Dispatcher) owner() string {
	if d.Owner == "" {
		host, _ := os.Hostname()
		d.Owner = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	return d.Owner
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Dispatcher) maxSubmitFailures() int {
	if d.MaxSubmitFailures > 0 {
		return d.MaxSubmitFailures
	}
	return 10
}

func (d *Dispatcher) maxBackoff() time.Duration {
	if d.MaxBackoff > 0 {
		return d.MaxBackoff
	}
	return time.Minute
}

func (d *Dispatcher) log() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.New(slog.DiscardHandler)
}

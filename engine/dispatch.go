package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// ErrCannotSubmit says, wrapped in a Remediator's error, that the remediation can never be
// submitted: the dispatcher abandons it instead of retrying.
var ErrCannotSubmit = errors.New("cannot be submitted")

// Remediator submits one approved remediation's attempt to the cluster.
type Remediator interface {
	// Submit creates the attempt's job. It must be idempotent: submitting an attempt
	// whose job already exists succeeds without creating another.
	Submit(ctx context.Context, r *ledger.Remediation) error
}

// DispatchLedger is what the Dispatcher needs of the ledger.
type DispatchLedger interface {
	Approved(ctx context.Context, limit int, now time.Time) ([]ledger.Remediation, error)
	Claim(ctx context.Context, id, owner string, now, until time.Time) (bool, int, error)
	Defer(ctx context.Context, id, owner string, retryAt time.Time) error
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
	// Interval is how often the ledger is polled when there is nothing to do (default 200 ms).
	Interval time.Duration
	// MaxBackoff caps the wait before a remediation whose submission failed is tried
	// again (default 1 minute); other remediations go on meanwhile.
	MaxBackoff time.Duration
	// Owner names this dispatcher in submission claims (default host name and pid).
	Owner string
	Now   func() time.Time
	Log   *slog.Logger
}

// claimFor is how long a claim keeps other dispatchers off an attempt while its
// submission is in flight. A submission gets half of it; if the dispatcher dies
// meanwhile, another submits the attempt once the claim lapses (a job created just
// before the crash makes that a no-op: names are deterministic).
const claimFor = 30 * time.Second

// Run dispatches until ctx is cancelled.
func (d *Dispatcher) Run(ctx context.Context) error {
	interval := d.Interval
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
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
		}
	}
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
		if d.DryRun {
			if err := d.move(ctx, r, ledger.Abandoned, "dry-run: decided and recorded, not submitted"); err != nil {
				return busy, err
			}
			busy = true
			continue
		}
		now := d.now()
		if d.Limiter != nil {
			if ok, wait := d.Limiter.Allow(now); !ok {
				d.sleep(ctx, wait)
				return busy, nil
			}
		}
		owner := d.owner()
		if due := dueAt(r); now.Before(due) {
			// The fix asks to wait (a backoff, capacity to free up): hold the attempt
			// until then; no dispatcher sees it before.
			if _, _, err := d.Ledger.Claim(ctx, r.EventID, owner, now, due); err != nil {
				return busy, err
			}
			continue
		}
		claimed, failures, err := d.Ledger.Claim(ctx, r.EventID, owner, now, now.Add(claimFor))
		if err != nil {
			return busy, err
		}
		if !claimed {
			continue // another dispatcher has it, or it was moved meanwhile
		}
		sctx, cancel := context.WithTimeout(ctx, claimFor/2)
		err = d.Remediator.Submit(sctx, r)
		cancel()
		if errors.Is(err, ErrCannotSubmit) {
			if err := d.move(ctx, r, ledger.Abandoned, "cannot be submitted: "+err.Error()); err != nil {
				return busy, err
			}
			d.log().Warn("remediation abandoned", "remediation", r.EventID, "err", err)
			busy = true
			continue
		}
		if err != nil {
			wait := min(time.Second<<min(failures, 16), d.maxBackoff())
			if derr := d.Ledger.Defer(ctx, r.EventID, owner, now.Add(wait)); derr != nil {
				return busy, derr
			}
			d.log().Warn("submission failed; will retry", "remediation", r.EventID, "err", err, "in", wait, "failures", failures+1)
			continue
		}
		if err := d.move(ctx, r, ledger.Submitted, "submitted "+attemptJob(r)); err != nil {
			return busy, err
		}
		busy = true
	}
	return busy, nil
}

func (d *Dispatcher) move(ctx context.Context, r *ledger.Remediation, to ledger.State, detail string) error {
	err := d.Ledger.Transition(ctx, r.EventID, ledger.Approved, to, ActorDispatcher, detail, d.now())
	if errors.Is(err, ledger.ErrConflict) {
		return nil // another replica got there first
	}
	return err
}

// dueAt is when r may be submitted: its receipt plus the chosen option's delay.
func dueAt(r *ledger.Remediation) time.Time {
	if r.Recommendation == nil {
		return time.Time{}
	}
	opt, ok := r.Recommendation.ChosenOption()
	if !ok || opt.DelaySeconds <= 0 {
		return time.Time{}
	}
	return r.ReceivedAt.Add(time.Duration(opt.DelaySeconds * float64(time.Second)))
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

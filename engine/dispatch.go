package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// Remediator submits one approved remediation's attempt to the cluster.
type Remediator interface {
	// Submit creates the attempt's job. It must be idempotent: submitting an attempt
	// whose job already exists succeeds without creating another.
	Submit(ctx context.Context, r *ledger.Remediation) error
}

// DispatchLedger is what the Dispatcher needs of the ledger.
type DispatchLedger interface {
	Approved(ctx context.Context, limit int) ([]ledger.Remediation, error)
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
	Now        func() time.Time
	Log        *slog.Logger

	retry map[string]backoff
}

type backoff struct {
	next time.Time
	wait time.Duration
}

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
	if d.retry == nil {
		d.retry = map[string]backoff{}
	}
	paused, err := d.Ledger.Paused(ctx)
	if err != nil {
		return false, fmt.Errorf("read the kill switch: %w", err)
	}
	if paused {
		return false, nil // the kill switch holds every submission, approved by whoever
	}
	todo, err := d.Ledger.Approved(ctx, 200)
	if err != nil {
		return false, fmt.Errorf("list approved remediations: %w", err)
	}
	busy := false
	for i := range todo {
		r := &todo[i]
		now := d.now()
		if b, ok := d.retry[r.EventID]; ok && now.Before(b.next) {
			continue
		}
		if d.DryRun {
			if err := d.move(ctx, r, ledger.Abandoned, "dry-run: decided and recorded, not submitted"); err != nil {
				return busy, err
			}
			busy = true
			continue
		}
		if d.Limiter != nil {
			if ok, wait := d.Limiter.Allow(now); !ok {
				d.sleep(ctx, wait)
				return busy, nil
			}
		}
		if err := d.Remediator.Submit(ctx, r); err != nil {
			b := d.retry[r.EventID]
			b.wait = min(max(2*b.wait, time.Second), d.maxBackoff())
			b.next = now.Add(b.wait)
			d.retry[r.EventID] = b
			d.log().Warn("submission failed; will retry", "remediation", r.EventID, "err", err, "in", b.wait)
			continue
		}
		delete(d.retry, r.EventID)
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

func attemptJob(r *ledger.Remediation) string {
	a, _ := ownAttempt(r)
	return a.JobName
}

func (d *Dispatcher) sleep(ctx context.Context, wait time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(wait):
	}
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

package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
)

// ActorVerifier is the actor of the audit rows of events the cluster did not bear out.
const ActorVerifier = "verifier"

// verify checks the fresh valid events against the cluster, in parallel, within
// VerifyTimeout. A verified event's job is replaced by the cluster's description of
// it; one the cluster does not bear out is marked. Events that could not be
// checked are taken out of items (they are neither decided nor recorded) and the
// returned error, wrapping ingest.ErrNotYet, asks for the batch again — unless an
// event has waited VerifyPatience, in which case it is recorded rejected.
func (in *Intake) verify(ctx context.Context, items []*item) ([]*item, error) {
	if in.Verifier == nil {
		return items, nil
	}
	timeout := in.VerifyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	vctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	work := make(chan *item)
	var wg sync.WaitGroup
	for range min(8, len(items)) {
		wg.Go(func() {
			for it := range work {
				in.verifyOne(vctx, it)
			}
		})
	}
	for _, it := range items {
		if it.ev != nil {
			work <- it
		}
	}
	close(work)
	wg.Wait()

	kept := items[:0]
	var waiting []*item
	for _, it := range items {
		if it.ev == nil || it.verified || it.unverified != "" {
			kept = append(kept, it)
		} else {
			waiting = append(waiting, it)
		}
	}
	if len(waiting) == 0 {
		return kept, nil
	}
	now := in.now()
	in.waitMu.Lock()
	defer in.waitMu.Unlock()
	if in.waiting == nil || len(in.waiting) > maxWaiting {
		in.waiting = map[string]time.Time{}
	}
	patience := in.VerifyPatience
	if patience <= 0 {
		patience = 15 * time.Minute
	}
	still := 0
	for _, it := range waiting {
		first, ok := in.waiting[it.ev.ID]
		if !ok {
			in.waiting[it.ev.ID], first = now, now
		}
		if now.Sub(first) >= patience {
			delete(in.waiting, it.ev.ID)
			it.unverified = fmt.Sprintf("could not be verified on the cluster for %s: %v", patience, it.verifyErr)
			kept = append(kept, it)
			continue
		}
		still++
	}
	if still == 0 {
		return kept, nil
	}
	return kept, fmt.Errorf("%d events could not be verified yet (%w): %w", still, waiting[0].verifyErr, ingest.ErrNotYet)
}

// maxWaiting bounds the events remembered as waiting for verification.
const maxWaiting = 100_000

func (in *Intake) verifyOne(ctx context.Context, it *item) {
	defer func() {
		if p := recover(); p != nil {
			in.log().Error("verification panicked", "event", it.ev.ID, "panic", p, "stack", string(debug.Stack()))
			it.unverified = fmt.Sprintf("internal: the verification failed: %v", p)
		}
	}()
	v, err := in.Verifier.Verify(ctx, it.ev)
	switch {
	case err == nil:
		if it.ev.Job.Kind != failure.Deployment || v.Job.Kind != failure.Deployment {
			v.Job.Attempt = it.ev.Job.Attempt // the ledger's to say: see chains
		}
		it.ev.Job = v.Job
		it.verified, it.remediation = true, v.Remediation
		in.waitMu.Lock()
		delete(in.waiting, it.ev.ID)
		in.waitMu.Unlock()
	case errors.Is(err, ErrUnverified):
		it.unverified = err.Error()
	default:
		it.verifyErr = err
		in.log().Warn("cannot verify an event yet; it waits for the batch's next delivery", "event", it.ev.ID, "err", err)
	}
}

// chains places each fresh valid event in its chain from autofix's own records: a
// Job autofix created (an attempt the ledger holds under that name in that
// namespace, and, when verified, whose remediation annotation agrees) continues its
// chain with its attempt number; any other Job starts a chain of its own as attempt
// 1. Labels and the event's attempt are never trusted for this: a chain id or an
// attempt number anyone can set would let them exhaust another job's budget.
// Events the cluster did not bear out are recorded rejected, outside any history.
func (in *Intake) chains(ctx context.Context, items []*item) error {
	var keys []ledger.JobKey
	for _, it := range items {
		if it.ev != nil && it.unverified == "" {
			keys = append(keys, ledger.JobKey{Namespace: it.ev.Job.Namespace, Name: it.ev.Job.Name})
		}
	}
	var known map[ledger.JobKey]ledger.Attempt
	if len(keys) > 0 {
		var err error
		if known, err = in.Ledger.AttemptsByJob(ctx, keys); err != nil {
			return fmt.Errorf("read the attempts of %d jobs: %w", len(keys), err)
		}
	}
	for _, it := range items {
		if it.ev == nil {
			continue
		}
		j := &it.ev.Job
		it.entry.ChainID, it.original = j.Namespace+"/"+j.Name, j.Name
		if it.unverified != "" {
			// Recorded under its position, not its id: an early forgery of a real
			// failure's id must not make the real event a duplicate.
			j.Attempt = 0 // counts for no chain
			it.entry.EventID = RejectedID(it.msg)
			it.entry.State, it.entry.Actor, it.entry.Reason, it.entry.NoHistory = ledger.Rejected, ActorVerifier, it.unverified, true
			continue
		}
		a, ok := known[ledger.JobKey{Namespace: j.Namespace, Name: j.Name}]
		switch {
		case ok && (!it.verified || it.remediation == a.EventID):
			it.entry.ChainID, j.Attempt = a.ChainID, a.Number
			it.original = ChainOriginal(a.ChainID, j.Namespace, j.Name)
		case j.Kind != failure.Deployment || !it.verified: // a verified rollout's attempt is its generation
			j.Attempt = 1
		}
	}
	return nil
}

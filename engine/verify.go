package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
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
// it; one the cluster does not bear out is marked. Events that could not be checked
// are returned apart, in waiting: they are neither decided nor recorded (see wait).
func (in *Intake) verify(ctx context.Context, items []*item) (kept, waiting []*item) {
	if in.Verifier == nil {
		return items, nil
	}
	timeout := in.VerifyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	vctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Events that waited before go first, oldest first: no batch of newcomers can
	// keep them waiting for ever.
	order := slices.Clone(items)
	in.waitMu.Lock()
	first := func(it *item) time.Time {
		if t, ok := in.waiting[it.pos]; ok {
			return t
		}
		return time.Time{}
	}
	slices.SortStableFunc(order, func(a, b *item) int {
		ta, tb := first(a), first(b)
		switch {
		case ta.IsZero() == tb.IsZero():
			return ta.Compare(tb)
		case ta.IsZero():
			return 1
		}
		return -1
	})
	in.waitMu.Unlock()
	work := make(chan *item)
	var wg sync.WaitGroup
	for range min(8, len(items)) {
		wg.Go(func() {
			for it := range work {
				in.verifyOne(vctx, it)
			}
		})
	}
	for _, it := range order {
		if it.ev != nil {
			work <- it
		}
	}
	close(work)
	wg.Wait()
	for _, it := range items {
		if it.ev == nil || it.verified || it.unverified != "" {
			kept = append(kept, it)
		} else {
			waiting = append(waiting, it)
		}
	}
	return kept, waiting
}

// onePerEvent keeps, of the messages that carry one event id, the one that stands
// for it: the first verified (without a verifier, the first). Messages the verifier
// rejected stay, each to be recorded under its position: a forgery ahead of a real
// failure in the batch cannot take the real one's id. Messages waiting with the id
// of one that stands are dropped too.
func onePerEvent(kept, waiting []*item, verifying bool) ([]*item, []*item) {
	stands := map[string]bool{}
	out := kept[:0]
	for _, it := range kept {
		switch {
		case it.ev == nil || it.unverified != "":
			out = append(out, it)
		case !stands[it.ev.ID]:
			stands[it.ev.ID] = true
			out = append(out, it)
		}
	}
	if !verifying {
		return out, waiting
	}
	still := waiting[:0]
	for _, it := range waiting {
		if !stands[it.ev.ID] {
			still = append(still, it)
		}
	}
	return out, still
}

// wait deals with the events that could not be verified: each waits for its
// message's next delivery, for VerifyPatience from its first try at most, after
// which it is recorded rejected. It returns the items to decide and, while some
// wait, an error wrapping ingest.ErrNotYet that asks for the batch again.
func (in *Intake) wait(kept, waiting []*item) ([]*item, error) {
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
	var why error
	for _, it := range waiting {
		first, ok := in.waiting[it.pos]
		if !ok {
			in.waiting[it.pos], first = now, now
		}
		if now.Sub(first) >= patience {
			delete(in.waiting, it.pos)
			it.unverified = fmt.Sprintf("could not be verified on the cluster for %s: %v", patience, it.verifyErr)
			kept = append(kept, it)
			continue
		}
		still++
		why = it.verifyErr
	}
	if still == 0 {
		return kept, nil
	}
	return kept, fmt.Errorf("%d events could not be verified yet (%w): %w", still, why, ingest.ErrNotYet)
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
		it.verified, it.remediation, it.token = true, v.Remediation, v.Token
		in.settled(it)
	case errors.Is(err, ErrUnverified):
		it.unverified = err.Error()
		in.settled(it)
	default:
		it.verifyErr = err
		in.log().Warn("cannot verify an event yet; it waits for the batch's next delivery", "event", it.ev.ID, "err", err)
	}
}

// settled forgets that its message waited for verification.
func (in *Intake) settled(it *item) {
	in.waitMu.Lock()
	delete(in.waiting, it.pos)
	in.waitMu.Unlock()
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
		it.entry.ChainID, it.original = failure.ChainID(j.Namespace, j.Name), j.Name
		if it.unverified != "" {
			// Recorded under its position, not its id: an early forgery of a real
			// failure's id must not make the real event a duplicate.
			j.Attempt = 0 // counts for no chain
			it.entry.EventID = it.pos
			it.entry.State, it.entry.Actor, it.entry.Reason, it.entry.NoHistory = ledger.Rejected, ActorVerifier, it.unverified, true
			continue
		}
		a, ok := known[ledger.JobKey{Namespace: j.Namespace, Name: j.Name}]
		switch {
		case ok && (!it.verified || it.remediation == a.EventID && (a.Token == "" || a.Token == it.token)):
			it.entry.ChainID, j.Attempt = a.ChainID, a.Number
			it.original = failure.ChainOriginal(a.ChainID, j.Namespace, j.Name)
		case j.Kind != failure.Deployment || !it.verified: // a verified rollout's attempt is its generation
			j.Attempt = 1
		}
	}
	return nil
}

package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// ActorVerifier is the actor of the audit rows of events the cluster did not bear out.
const ActorVerifier = "verifier"

// verify checks the fresh valid events against the cluster, in parallel, within
// VerifyTimeout. A verified event's job is replaced by the cluster's description of
// it; one the cluster does not bear out is marked; one that could not be checked is
// left as it is (the Remediator checks again before acting).
func (in *Intake) verify(ctx context.Context, items []*item) {
	if in.Verifier == nil {
		return
	}
	timeout := in.VerifyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	work := make(chan *item)
	var wg sync.WaitGroup
	for range min(8, len(items)) {
		wg.Go(func() {
			for it := range work {
				in.verifyOne(ctx, it)
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
}

func (in *Intake) verifyOne(ctx context.Context, it *item) {
	defer func() {
		if p := recover(); p != nil {
			in.log().Error("verification panicked", "event", it.ev.ID, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	v, err := in.Verifier.Verify(ctx, it.ev)
	switch {
	case err == nil:
		v.Job.Attempt = it.ev.Job.Attempt // the ledger's to say: see chains
		it.ev.Job = v.Job
		it.verified, it.remediation = true, v.Remediation
	case errors.Is(err, ErrUnverified):
		it.unverified = err.Error()
	default:
		in.log().Warn("cannot verify an event now; it will be verified before any action", "event", it.ev.ID, "err", err)
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
			j.Attempt = 0 // counts for no chain
			it.entry.State, it.entry.Actor, it.entry.Reason, it.entry.NoHistory = ledger.Rejected, ActorVerifier, it.unverified, true
			continue
		}
		a, ok := known[ledger.JobKey{Namespace: j.Namespace, Name: j.Name}]
		switch {
		case ok && (!it.verified || it.remediation == a.EventID):
			it.entry.ChainID, j.Attempt = a.ChainID, a.Number
			it.original = ChainOriginal(a.ChainID, j.Namespace, j.Name)
		case j.Kind != failure.Deployment: // a rollout's attempt is its generation, from the cluster
			j.Attempt = 1
		}
	}
	return nil
}

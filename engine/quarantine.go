package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
)

// quarantine turns it into a rejected message with reason: recorded under its
// position, like an undecodable message, so that a redelivery (after a crash before
// the dead letter was written) is dead-lettered again rather than taken for a
// decided event, and sent to the dead-letter topic.
func quarantine(it *item, reason string) {
	it.entry = ledger.Entry{EventID: it.pos, Source: it.entry.Source, ReceivedAt: it.entry.ReceivedAt,
		State: ledger.Rejected, Actor: "intake", Error: reason}
	it.ev = nil
}

// record writes the entries of items to the ledger and marks the fresh ones. An
// entry that can never be recorded as it is — one the ledger refuses while it
// records others — is quarantined, so that one message cannot fail its batch again
// and again: the batch's error is narrowed down to the message that caused it. An
// error of the ledger itself (it cannot be reached) fails the call, and the batch is
// handed again.
func (in *Intake) record(ctx context.Context, items []*item) error {
	if len(items) == 0 {
		return nil
	}
	// Entries the ledger names as unrecordable are quarantined at once; each round
	// quarantines one, so this ends.
	for range len(items) + 1 {
		err := in.recordAll(ctx, items)
		var ee *ledger.EntryError
		if !errors.As(err, &ee) || ee.Index < 0 || ee.Index >= len(items) {
			if err == nil || ctx.Err() != nil {
				return err
			}
			return in.isolate(ctx, items, err)
		}
		it := items[ee.Index]
		in.log().Warn("quarantined a message the ledger cannot record", "event", ee.EventID, "at", it.msg.Position(), "err", ee.Err)
		quarantine(it, "internal: cannot be recorded: "+ee.Err.Error())
	}
	return errors.New("record: quarantining did not converge")
}

// isolate handles a failure of Record that names no entry. If the ledger answers at
// all, the fault is in the entries: it records halves apart, down to the single
// entry that fails, which it quarantines.
func (in *Intake) isolate(ctx context.Context, items []*item, cause error) error {
	if perr := in.Ledger.Ping(ctx); perr != nil {
		return fmt.Errorf("record %d events: %w", len(items), cause)
	}
	if len(items) == 1 {
		it := items[0]
		// Once more on its own, then the ledger with a made-up entry: only an entry
		// that fails again while the ledger records others is quarantined.
		err := in.recordAll(ctx, items)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if perr := in.probe(ctx); perr != nil {
			return fmt.Errorf("record event %s: %w (the ledger fails a made-up event too: %w)", it.entry.EventID, err, perr)
		}
		cause = err
		saved := *it
		quarantine(it, "internal: cannot be recorded: "+cause.Error())
		if err := in.recordAll(ctx, items); err != nil {
			// The quarantine record failed as well: the ledger, not the entry, is at
			// fault. Keep the entry as it was for the batch's next try.
			*it = saved
			return fmt.Errorf("record event %s: %w", saved.entry.EventID, cause)
		}
		in.log().Warn("quarantined a message the ledger cannot record", "event", saved.entry.EventID, "at", it.msg.Position(), "err", cause)
		return nil
	}
	half := len(items) / 2
	for _, part := range [][]*item{items[:half], items[half:]} {
		if err := in.recordAll(ctx, part); err != nil {
			if ctx.Err() != nil {
				return err
			}
			if err := in.record(ctx, part); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordAll records the entries of items in one call and sets their fresh flags and
// outcome sequence numbers.
func (in *Intake) recordAll(ctx context.Context, items []*item) error {
	entries := make([]ledger.Entry, len(items))
	for i, it := range items {
		entries[i] = it.entry
	}
	ok, err := in.Ledger.Record(ctx, entries)
	if err != nil {
		return err
	}
	for i, it := range items {
		it.entry.OutcomeSeq = entries[i].OutcomeSeq
		it.fresh = ok[i]
	}
	return nil
}

// DeadLetterFailed implements ingest.DeadLetterFailer: the rejected message's
// record in the ledger says that its dead-letter copy could not be written.
func (in *Intake) DeadLetterFailed(ctx context.Context, m *ingest.Message, reason string, cause error) error {
	return in.Ledger.Note(ctx, RejectedID(m), "intake", "dead-letter",
		fmt.Sprintf("not dead-lettered (%v); the message is committed without a copy", cause), in.now())
}

// probeID is the event of the made-up entries probe records and rolls back.
const probeID = "autofix-probe"

// probe asks the ledger what intake asks of it for a made-up, valid event — its
// lookups, and its recording, rolled back — to tell a failing ledger (an outage, a
// schema it does not have) from a failing message: nil when the ledger would
// handle such an event now.
func (in *Intake) probe(ctx context.Context) error {
	const ns, name = "autofix-probe", "probe"
	chain, key := failure.ChainID(ns, name), failure.TemplateKey(ns, name)
	if _, err := in.Ledger.SeenErrors(ctx, []string{probeID}); err != nil {
		return err
	}
	if _, err := in.Ledger.AttemptsByJob(ctx, []ledger.JobKey{{Namespace: ns, Name: name}}); err != nil {
		return err
	}
	if _, err := in.Ledger.HistorySince(ctx, map[string]int64{key: 0}, in.historyLimit()); err != nil {
		return err
	}
	if _, err := in.Ledger.ChainAttempts(ctx, []string{chain}); err != nil {
		return err
	}
	if _, err := in.Ledger.Paused(ctx); err != nil {
		return err
	}
	res := failure.Resources{CPUMillis: 1000, MemoryBytes: 1 << 30}
	opt := failure.Option{Resources: failure.Resources{CPUMillis: 1000, MemoryBytes: 2 << 30}, PSuccess: 0.9, PFix: 0.9, CostMultiple: 2,
		Changes: []string{"memory 1Gi -> 2Gi"}, Pareto: true}
	ev := failure.Event{ID: probeID, Job: failure.Job{Namespace: ns, Name: name, Template: name, Kind: failure.Batch, Attempt: 1, Resources: res},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}}
	rec := failure.Recommendation{EventID: probeID, Retry: true, Chosen: 0, Options: []failure.Option{opt},
		Classification: failure.Classification{Category: failure.OOMMemory, Retryable: true, Confidence: 1, Action: failure.IncreaseMemory}}
	return in.Ledger.Check(ctx, []ledger.Entry{{EventID: probeID, Event: &ev, ChainID: chain, Recommendation: &rec,
		State: ledger.Approved, Actor: ActorPolicy, ReceivedAt: in.now(),
		Attempt: &ledger.Attempt{Number: 2, JobName: name + "-af2", Resources: opt.Resources, Option: &opt}}})
}

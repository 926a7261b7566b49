package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// Actors that appear in the audit trail.
const (
	ActorPolicy     = "policy"
	ActorDispatcher = "dispatcher"
)

// Recommender advises how to retry one failure given its template's earlier outcomes.
type Recommender interface {
	Recommend(ev *failure.Event, history []failure.Outcome) failure.Recommendation
}

// ErrUnverified is wrapped by a Verifier's or a Remediator's error when the cluster
// does not bear a failure out: autofix must not act on it.
var ErrUnverified = errors.New("not verified on the cluster")

// Verified is what the cluster says of the workload a failure event names.
type Verified struct {
	// Job is the event's job as the cluster describes it; it replaces the event's.
	Job failure.Job
	// Remediation is, for a Job autofix created, the remediation it answered, and
	// Token the attempt token it carries ("" if none).
	Remediation string
	Token       string
}

// Verifier checks failure events against the cluster before autofix acts on them.
type Verifier interface {
	// Verify returns what the cluster says of ev's workload; an error wrapping
	// ErrUnverified when it does not bear ev out, another when it cannot be asked.
	Verify(ctx context.Context, ev *failure.Event) (Verified, error)
}

// Grants are the kinds of fix an admin granted autonomy, as this replica knows them
// (autonomy.Grants): read for every event, so from memory.
type Grants interface {
	// Granted returns the grant of kind k.
	Granted(k ledger.Kind) (policy.Grant, bool)
}

// IntakeLedger is what Intake needs of the ledger.
type IntakeLedger interface {
	SeenErrors(ctx context.Context, ids []string) (map[string]string, error)
	HistorySince(ctx context.Context, after map[string]int64, limit int) (map[string]ledger.TemplateHistory, error)
	ChainAttempts(ctx context.Context, chains []string) (map[string]int, error)
	AttemptsByJob(ctx context.Context, jobs []ledger.JobKey) (map[ledger.JobKey]ledger.Attempt, error)
	Record(ctx context.Context, entries []ledger.Entry) ([]bool, error)
	Paused(ctx context.Context) (bool, error)
	// Ping reports whether the ledger can be reached: it tells a failing entry from
	// a failing ledger.
	Ping(ctx context.Context) error
	// Check does what Record would and rolls it back.
	Check(ctx context.Context, entries []ledger.Entry) error
	Note(ctx context.Context, id, actor, action, detail string, at time.Time) error
}

// Intake turns batches of Kafka messages into ledger records. It is an ingest.Handler.
type Intake struct {
	Ledger      IntakeLedger
	Recommender Recommender
	Policy      *policy.Config
	// Grants, when set, are the kinds of fix granted autonomy: their fixes the
	// policy's rules would keep for review apply on their own (policy.Input.Grant).
	Grants Grants
	// Workload, when set, names the API kind of the workload an event is the
	// failure of (remediate.EventKind: Job, JobSet, RayJob, Workflow); nil: every
	// event is a batch Job's. It is recorded with the event, and a grant applies to
	// the workload it was granted for only (ledger.Kind).
	Workload func(id string) string
	// Verifier, when set, checks every event against the cluster first: one it does
	// not bear out is recorded rejected, is not recommended for, and stays out of
	// its template's history. Nil when there is no cluster (shadow mode).
	Verifier Verifier
	// VerifyTimeout bounds the verification of one batch (default 10 s). Events it
	// could not verify (in time, or because the cluster did not answer) are not
	// decided: they wait for the batch's next delivery, for VerifyPatience at most
	// (default 15 minutes), after which they are recorded rejected.
	VerifyTimeout  time.Duration
	VerifyPatience time.Duration
	// Workers decide in parallel (default GOMAXPROCS); the events of one template are
	// decided in order by one worker, each seeing the ones before it.
	Workers int
	// HistoryLimit is how many earlier outcomes of a template the recommender sees
	// (default DefaultHistoryLimit).
	HistoryLimit int
	Now          func() time.Time
	Log          *slog.Logger
	// Decided, if set, is called for every fresh valid event recorded, with the time
	// from the message's timestamp to its decision being durable.
	Decided func(e *ledger.Entry, latency time.Duration)

	// cache holds each template's recent outcomes, so a batch reads (and decodes)
	// only the outcomes recorded since the last one. It is exact, not a guess: the
	// ledger numbers each template's outcomes, whoever wrote them.
	cacheMu sync.Mutex
	cache   map[string]*cachedHistory

	// waiting is when each event that could not be verified yet was first tried.
	waitMu  sync.Mutex
	waiting map[string]time.Time
}

type cachedHistory struct {
	seq      int64
	outcomes []failure.Outcome
}

// maxCachedTemplates bounds the history cache; past it the cache starts over.
const maxCachedTemplates = 50000

// RejectedID is the ledger id of a message that could not be decoded or decided: its
// position. Events may not use ids with this prefix.
//
// It is "kafka:<topic>/<partition>/<offset>#<hash>", the hash a short digest of the
// value: the same message delivered again has the same id, another message at the
// same position (a topic deleted and made again) another.
func RejectedID(m *ingest.Message) string {
	sum := sha256.Sum256(m.Value)
	return rejectedPrefix + m.Position() + "#" + hex.EncodeToString(sum[:4])
}

const rejectedPrefix = "kafka:"

// item is one message on its way through Handle.
type item struct {
	msg *ingest.Message
	// pos is the message's RejectedID, computed once (it hashes the value).
	pos   string
	index int
	ev    *failure.Event
	entry ledger.Entry
	// outcome is the failed run as the template's history will hold it.
	outcome failure.Outcome
	// fresh is set once the entry is recorded, if it was new to the ledger.
	fresh bool
	// verified is set when the cluster bore the event out, unverified (the reason)
	// when it did not; neither when it could not be asked.
	verified   bool
	unverified string
	verifyErr  error // why the cluster could not be asked
	// remediation is, for a Job autofix created, the remediation it answered, and
	// token its attempt token.
	remediation, token string
	// original is the first Job of the event's chain.
	original string
}

// newItem starts the item of message m, the index-th of its batch, received at now.
func newItem(m *ingest.Message, index int, now time.Time) *item {
	return &item{msg: m, pos: RejectedID(m), index: index, entry: ledger.Entry{ReceivedAt: now,
		Source: ledger.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}}}
}

// Handle implements ingest.Handler. A batch that fails for a reason of its own
// while the ledger answers is handled in halves, down to the one message that makes
// it fail, which is quarantined: no message can fail its batch for good. Events the
// cluster could not be asked about are left for the batch's next delivery (an error
// wrapping ingest.ErrNotYet), the rest recorded.
func (in *Intake) Handle(ctx context.Context, batch []ingest.Message) ([]ingest.Rejection, error) {
	rejected, err := in.handle(ctx, batch)
	if err == nil || ctx.Err() != nil || errors.Is(err, ingest.ErrNotYet) {
		return rejected, err
	}
	if perr := in.Ledger.Ping(ctx); perr != nil {
		return nil, err // the ledger, not the batch
	}
	return in.narrow(ctx, batch, err)
}

// narrow handles batch in halves after it failed with cause, quarantining the single
// message that fails on its own.
func (in *Intake) narrow(ctx context.Context, batch []ingest.Message, cause error) ([]ingest.Rejection, error) {
	if len(batch) == 1 {
		// Once more on its own: a failure that does not come back was the ledger's
		// moment, not the message.
		rej, err := in.handle(ctx, batch)
		if err == nil || errors.Is(err, ingest.ErrNotYet) || ctx.Err() != nil {
			return rej, err
		}
		if perr := in.probe(ctx); perr != nil {
			return nil, fmt.Errorf("%w (the ledger fails a made-up event too: %w)", err, perr)
		}
		m := &batch[0]
		it := newItem(m, 0, in.now())
		reason := "internal: cannot be processed: " + err.Error()
		quarantine(it, reason)
		if err := in.recordAll(ctx, []*item{it}); err != nil {
			return nil, fmt.Errorf("%w (and its quarantine: %w)", cause, err)
		}
		in.log().Warn("quarantined a message that fails its batch", "at", m.Position(), "err", err)
		return []ingest.Rejection{{Index: 0, Reason: reason}}, nil
	}
	var out []ingest.Rejection
	notYet := false
	half := len(batch) / 2
	for _, part := range []struct {
		msgs []ingest.Message
		off  int
	}{{batch[:half], 0}, {batch[half:], half}} {
		rej, err := in.handle(ctx, part.msgs)
		switch {
		case errors.Is(err, ingest.ErrNotYet):
			notYet = true
			continue
		case err != nil && ctx.Err() != nil:
			return nil, err
		case err != nil:
			if rej, err = in.narrow(ctx, part.msgs, err); err != nil {
				return nil, err
			}
		}
		for _, r := range rej {
			out = append(out, ingest.Rejection{Index: r.Index + part.off, Reason: r.Reason})
		}
	}
	if notYet {
		return nil, fmt.Errorf("events of the batch could not be verified yet: %w", ingest.ErrNotYet)
	}
	return out, nil
}

// handle is Handle without the narrowing.
func (in *Intake) handle(ctx context.Context, batch []ingest.Message) ([]ingest.Rejection, error) {
	now := in.now()
	items := make([]*item, 0, len(batch))
	byPos := make(map[string]*item, len(batch))
	ids := make([]string, 0, len(batch))
	var rejected []ingest.Rejection
	decoded := make([]*item, len(batch))
	in.parallel(len(batch), func(i int) {
		m := &batch[i]
		it := newItem(m, i, now)
		ev, err := failure.Decode(m.Value)
		if err == nil && strings.HasPrefix(ev.ID, rejectedPrefix) {
			err = fmt.Errorf("id: %q: the prefix %q is reserved for messages autofix rejects", ev.ID, rejectedPrefix)
		}
		if err != nil {
			it.entry.EventID, it.entry.State, it.entry.Error = it.pos, ledger.Rejected, "decode: "+err.Error()
			it.entry.Actor = "intake"
		} else {
			it.ev = &ev
			it.entry.EventID, it.entry.Event, it.entry.Workload = ev.ID, &ev, in.workload(&ev)
		}
		decoded[i] = it
	})
	// Each message is looked up by its position too: one recorded under it (rejected
	// by the verifier, or quarantined) is done, whatever its event id.
	for _, it := range decoded {
		if _, dup := byPos[it.pos]; dup {
			continue
		}
		byPos[it.pos] = it
		ids = append(ids, it.pos)
		if it.ev != nil {
			ids = append(ids, it.ev.ID)
		}
		items = append(items, it)
	}
	seen, err := in.Ledger.SeenErrors(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("look up %d events: %w", len(ids), err)
	}
	fresh := items[:0]
	for _, it := range items {
		stored, atPos := seen[it.pos]
		_, asEvent := seen[it.entry.EventID]
		switch {
		case atPos && stored != "":
			// Rejected with an error (undecodable, quarantined) before a crash, perhaps
			// not yet dead-lettered: send it again.
			rejected = append(rejected, ingest.Rejection{Index: it.index, Reason: stored})
		case atPos || asEvent:
			// Done: this message before (decided, or rejected by the verifier), or this
			// event from another message.
		default:
			fresh = append(fresh, it)
		}
	}
	fresh, waiting := in.verify(ctx, fresh)
	fresh, waiting = onePerEvent(fresh, waiting, in.Verifier != nil)
	fresh, deferred := in.wait(fresh, waiting)
	if err := in.decide(ctx, fresh); err != nil {
		return nil, err
	}
	if err := in.record(ctx, fresh); err != nil {
		return nil, err
	}
	in.remember(fresh)
	done := in.now()
	for _, it := range fresh {
		if it.entry.State == ledger.Rejected && it.ev == nil {
			rejected = append(rejected, ingest.Rejection{Index: it.index, Reason: it.entry.Error})
		}
		if it.fresh && it.ev != nil && in.Decided != nil {
			in.Decided(&it.entry, done.Sub(it.msg.Time))
		}
	}
	if deferred != nil {
		return rejected, deferred
	}
	return rejected, nil
}

// decide fills the decisions of the fresh valid events.
func (in *Intake) decide(ctx context.Context, fresh []*item) error {
	if err := in.chains(ctx, fresh); err != nil {
		return err
	}
	groups := map[string][]*item{}
	var templates, chains []string
	seenChain := map[string]bool{}
	for _, it := range fresh {
		if it.ev == nil || it.unverified != "" {
			continue
		}
		key := it.ev.HistoryKey()
		if _, ok := groups[key]; !ok {
			templates = append(templates, key)
		}
		groups[key] = append(groups[key], it)
		if !seenChain[it.entry.ChainID] {
			seenChain[it.entry.ChainID] = true
			chains = append(chains, it.entry.ChainID)
		}
	}
	if len(groups) == 0 {
		return nil
	}
	history, err := in.history(ctx, templates)
	if err != nil {
		return err
	}
	runs, err := in.Ledger.ChainAttempts(ctx, chains)
	if err != nil {
		return fmt.Errorf("read attempts of %d chains: %w", len(chains), err)
	}
	paused, err := in.Ledger.Paused(ctx)
	if err != nil {
		return fmt.Errorf("read the kill switch: %w", err)
	}
	var mu sync.Mutex // guards runs: chains may span templates
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(in.workers(), len(groups)) {
		wg.Go(func() {
			for key := range work {
				h := history[key]
				for _, it := range groups[key] {
					in.decideOne(it, &h, runs, &mu, paused)
				}
			}
		})
	}
	for _, key := range templates {
		work <- key
	}
	close(work)
	wg.Wait()
	return nil
}

// history returns the recent outcomes of each template, oldest first, as fresh copies.
func (in *Intake) history(ctx context.Context, templates []string) (map[string][]failure.Outcome, error) {
	in.cacheMu.Lock()
	defer in.cacheMu.Unlock()
	if in.cache == nil || len(in.cache) > maxCachedTemplates {
		in.cache = make(map[string]*cachedHistory)
	}
	after := make(map[string]int64, len(templates))
	for _, k := range templates {
		if c := in.cache[k]; c != nil {
			after[k] = c.seq
		} else {
			after[k] = 0
		}
	}
	limit := in.historyLimit()
	got, err := in.Ledger.HistorySince(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read history of %d templates: %w", len(templates), err)
	}
	out := make(map[string][]failure.Outcome, len(templates))
	for _, k := range templates {
		c, g := in.cache[k], got[k]
		if c == nil || g.Seq < c.seq { // new to the cache, or the ledger was reset under it
			c = &cachedHistory{}
			in.cache[k] = c
		}
		c.outcomes = append(c.outcomes, g.Outcomes...)
		if n := len(c.outcomes); n > limit {
			c.outcomes = append([]failure.Outcome(nil), c.outcomes[n-limit:]...)
		}
		c.seq = g.Seq
		out[k] = slices.Clone(c.outcomes)
	}
	return out, nil
}

// decideOne decides one event. A panic in the decision code turns the event into a
// rejected one rather than wedging its partition.
func (in *Intake) decideOne(it *item, history *[]failure.Outcome, runs map[string]int, mu *sync.Mutex, paused bool) {
	defer func() {
		if p := recover(); p != nil {
			in.log().Error("decision panicked", "event", it.entry.EventID, "panic", p, "stack", string(debug.Stack()))
			quarantine(it, fmt.Sprintf("internal: the decision failed: %v", p))
		}
	}()
	ev := it.ev
	rec := in.Recommender.Recommend(ev, *history)
	mu.Lock()
	n, next := NextAttempt(runs[it.entry.ChainID], ev.Job.Attempt)
	mu.Unlock()
	d := in.Policy.Decide(policy.Input{Event: ev, Recommendation: &rec, Runs: n, Paused: paused,
		Grant: in.grant(ev, rec.Classification.Category)})
	it.entry.Recommendation = &rec
	it.entry.Actor, it.entry.Reason, it.entry.Grant = ActorPolicy, d.Reason, 0
	switch d.Verdict {
	case policy.Auto:
		opt, _ := rec.ChosenOption()
		it.entry.State, it.entry.Grant = ledger.Approved, d.Grant
		it.entry.Attempt = &ledger.Attempt{ChainID: it.entry.ChainID, Number: next, EventID: ev.ID,
			JobName: failure.AttemptName(it.original, next), Resources: opt.Resources, Params: opt.Params, Option: &opt}
		mu.Lock()
		runs[it.entry.ChainID] = next
		mu.Unlock()
	case policy.Review:
		it.entry.State = ledger.PendingReview
	default:
		it.entry.State = ledger.Rejected
	}
	it.outcome = failure.Outcome{
		Template: ev.Job.Template, Attempt: ev.Job.Attempt, Resources: ev.Job.Resources, Params: ev.Job.Params,
		Category: rec.Classification.Category, DurationSeconds: ev.Failure.DurationSeconds, Usage: ev.Failure.Usage,
		Node: ev.Failure.Node, Cost: ev.Failure.Cost, Unpriced: ev.Failure.Unpriced, // as the ledger records it
	}
	*history = append(*history, it.outcome)
}

// remember adds the outcomes just recorded to the history cache. Their sequence
// numbers follow the cached one unless another writer added outcomes in between; then
// the template is dropped from the cache and read whole next time.
func (in *Intake) remember(fresh []*item) {
	in.cacheMu.Lock()
	defer in.cacheMu.Unlock()
	limit := in.historyLimit()
	for _, it := range fresh {
		seq := it.entry.OutcomeSeq
		if seq == 0 || it.ev == nil {
			continue
		}
		key := it.ev.HistoryKey()
		c := in.cache[key]
		if c == nil {
			continue
		}
		if seq != c.seq+1 {
			delete(in.cache, key)
			continue
		}
		c.outcomes = append(c.outcomes, it.outcome)
		if n := len(c.outcomes); n > limit {
			c.outcomes = append([]failure.Outcome(nil), c.outcomes[n-limit:]...)
		}
		c.seq = seq
	}
}

// workload is the API kind of the workload ev is the failure of (Workload).
func (in *Intake) workload(ev *failure.Event) string {
	if in.Workload == nil {
		return ""
	}
	return in.Workload(ev.ID)
}

// grant is the grant of category on ev's template for its job kind and workload,
// nil if none.
func (in *Intake) grant(ev *failure.Event, category failure.Category) *policy.Grant {
	if in.Grants == nil {
		return nil
	}
	k := ledger.Kind{Category: category, Template: ev.HistoryKey(), JobKind: ev.Job.Kind, Workload: in.workload(ev)}
	if g, ok := in.Grants.Granted(k); ok {
		return &g
	}
	return nil
}

func (in *Intake) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

// parallel calls fn(i) for i in [0, n) on the Intake's workers.
func (in *Intake) parallel(n int, fn func(i int)) {
	workers := min(in.workers(), n/32+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				fn(i)
			}
		})
	}
	wg.Wait()
}

func (in *Intake) workers() int {
	if in.Workers > 0 {
		return in.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// DefaultHistoryLimit is how many earlier outcomes of a template the recommender
// sees by default; training from the ledger gives its examples as many.
const DefaultHistoryLimit = 20

func (in *Intake) historyLimit() int {
	if in.HistoryLimit > 0 {
		return in.HistoryLimit
	}
	return DefaultHistoryLimit
}

func (in *Intake) log() *slog.Logger {
	if in.Log != nil {
		return in.Log
	}
	return slog.New(slog.DiscardHandler)
}

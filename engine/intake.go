package engine

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// Labels a re-submitted job carries so its own failures join the chain.
const (
	// LabelChain names the job chain: "namespace/original-job".
	LabelChain = "autofix.io/chain"
	// LabelOriginal names the chain's first job.
	LabelOriginal = "autofix.io/original-job"
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

// IntakeLedger is what Intake needs of the ledger.
type IntakeLedger interface {
	Seen(ctx context.Context, ids []string) (map[string]bool, error)
	History(ctx context.Context, templates []string, limit int) (map[string][]failure.Outcome, error)
	ChainAttempts(ctx context.Context, chains []string) (map[string]int, error)
	Record(ctx context.Context, entries []ledger.Entry) ([]bool, error)
	Paused(ctx context.Context) (bool, error)
}

// Intake turns batches of Kafka messages into ledger records. It is an ingest.Handler.
type Intake struct {
	Ledger      IntakeLedger
	Recommender Recommender
	Policy      *policy.Config
	// Workers decide in parallel (default GOMAXPROCS); the events of one template are
	// decided in order by one worker, each seeing the ones before it.
	Workers int
	// HistoryLimit is how many earlier outcomes of a template the recommender sees (default 20).
	HistoryLimit int
	Now          func() time.Time
	Log          *slog.Logger
	// Decided, if set, is called for every fresh event recorded, with the time from
	// the message reaching the broker to its decision being durable.
	Decided func(e *ledger.Entry, latency time.Duration)
}

// RejectedID is the ledger id of a message that could not be decoded: its position.
func RejectedID(m *ingest.Message) string { return "kafka:" + m.Position() }

// item is one message on its way through Handle.
type item struct {
	msg   *ingest.Message
	index int
	ev    *failure.Event
	entry ledger.Entry
}

// Handle implements ingest.Handler.
func (in *Intake) Handle(ctx context.Context, batch []ingest.Message) ([]ingest.Rejection, error) {
	now := in.now()
	items := make([]*item, 0, len(batch))
	byID := make(map[string]*item, len(batch))
	ids := make([]string, 0, len(batch))
	var rejected []ingest.Rejection
	for i := range batch {
		m := &batch[i]
		it := &item{msg: m, index: i}
		it.entry.Source = ledger.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
		it.entry.ReceivedAt = now
		if ev, err := failure.Decode(m.Value); err != nil {
			it.entry.EventID, it.entry.State, it.entry.Error = RejectedID(m), ledger.Rejected, "decode: "+err.Error()
			it.entry.Actor = "intake"
		} else {
			it.ev = &ev
			it.entry.EventID, it.entry.Event = ev.ID, &ev
		}
		if _, dup := byID[it.entry.EventID]; dup {
			continue // a duplicate within the batch: the first one stands for both
		}
		byID[it.entry.EventID] = it
		ids = append(ids, it.entry.EventID)
		items = append(items, it)
	}
	seen, err := in.Ledger.Seen(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("look up %d events: %w", len(ids), err)
	}
	fresh := items[:0]
	for _, it := range items {
		if !seen[it.entry.EventID] {
			fresh = append(fresh, it)
		} else if it.ev == nil {
			// Recorded before a crash, perhaps not yet dead-lettered: send it again.
			rejected = append(rejected, ingest.Rejection{Index: it.index, Reason: it.entry.Error})
		}
	}
	if err := in.decide(ctx, fresh); err != nil {
		return nil, err
	}
	entries := make([]ledger.Entry, len(fresh))
	for i, it := range fresh {
		entries[i] = it.entry
	}
	ok, err := in.Ledger.Record(ctx, entries)
	if err != nil {
		return nil, fmt.Errorf("record %d events: %w", len(entries), err)
	}
	done := in.now()
	for i, it := range fresh {
		if it.entry.State == ledger.Rejected && it.ev == nil {
			rejected = append(rejected, ingest.Rejection{Index: it.index, Reason: it.entry.Error})
		}
		if ok[i] && in.Decided != nil {
			in.Decided(&entries[i], done.Sub(it.msg.Time))
		}
	}
	return rejected, nil
}

// decide fills the decisions of the fresh valid events.
func (in *Intake) decide(ctx context.Context, fresh []*item) error {
	groups := map[string][]*item{}
	var templates, chains []string
	seenChain := map[string]bool{}
	for _, it := range fresh {
		if it.ev == nil {
			continue
		}
		key := TemplateKey(it.ev)
		if _, ok := groups[key]; !ok {
			templates = append(templates, key)
		}
		groups[key] = append(groups[key], it)
		it.entry.ChainID = ChainID(it.ev)
		if !seenChain[it.entry.ChainID] {
			seenChain[it.entry.ChainID] = true
			chains = append(chains, it.entry.ChainID)
		}
	}
	if len(groups) == 0 {
		return nil
	}
	history, err := in.Ledger.History(ctx, templates, in.historyLimit())
	if err != nil {
		return fmt.Errorf("read history of %d templates: %w", len(templates), err)
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

// decideOne decides one event. A panic in the decision code turns the event into a
// rejected one rather than wedging its partition.
func (in *Intake) decideOne(it *item, history *[]failure.Outcome, runs map[string]int, mu *sync.Mutex, paused bool) {
	defer func() {
		if p := recover(); p != nil {
			in.log().Error("decision panicked", "event", it.entry.EventID, "panic", p, "stack", string(debug.Stack()))
			it.entry = ledger.Entry{EventID: it.entry.EventID, Source: it.entry.Source, ReceivedAt: it.entry.ReceivedAt,
				State: ledger.Rejected, Actor: "intake", Error: fmt.Sprintf("internal: the decision failed: %v", p)}
			it.ev = nil
		}
	}()
	ev := it.ev
	rec := in.Recommender.Recommend(ev, *history)
	mu.Lock()
	n := max(runs[it.entry.ChainID], ev.Job.Attempt, 1)
	mu.Unlock()
	d := in.Policy.Decide(policy.Input{Event: ev, Recommendation: &rec, Runs: n, Paused: paused})
	it.entry.Recommendation = &rec
	it.entry.Actor, it.entry.Reason = ActorPolicy, d.Reason
	switch d.Verdict {
	case policy.Auto:
		opt, _ := rec.ChosenOption()
		it.entry.State = ledger.Approved
		it.entry.Attempt = &ledger.Attempt{ChainID: it.entry.ChainID, Number: n + 1, EventID: ev.ID,
			JobName: AttemptName(OriginalName(ev), n+1), Resources: opt.Resources, Params: opt.Params}
		mu.Lock()
		runs[it.entry.ChainID] = n + 1
		mu.Unlock()
	case policy.Review:
		it.entry.State = ledger.PendingReview
	default:
		it.entry.State = ledger.Rejected
	}
	*history = append(*history, failure.Outcome{
		Template: ev.Job.Template, Attempt: ev.Job.Attempt, Resources: ev.Job.Resources, Params: ev.Job.Params,
		Category: rec.Classification.Category, DurationSeconds: ev.Failure.DurationSeconds, Usage: ev.Failure.Usage,
		Node: ev.Failure.Node,
	})
}

// TemplateKey is the history key of an event's job: namespace/template.
func TemplateKey(ev *failure.Event) string {
	return ev.Job.Namespace + "/" + cmp.Or(ev.Job.Template, ev.Job.Name)
}

// OriginalName is the name of the first job of ev's chain.
func OriginalName(ev *failure.Event) string { return cmp.Or(ev.Job.Labels[LabelOriginal], ev.Job.Name) }

// ChainID identifies the chain of attempts ev belongs to.
func ChainID(ev *failure.Event) string {
	return cmp.Or(ev.Job.Labels[LabelChain], ev.Job.Namespace+"/"+OriginalName(ev))
}

// AttemptName is the deterministic name of attempt n of the chain that began with job
// original: "<original>-af<n>", shortened with a hash to fit Kubernetes' 63 characters.
func AttemptName(original string, n int) string {
	suffix := fmt.Sprintf("-af%d", n)
	if len(original)+len(suffix) <= 63 {
		return original + suffix
	}
	sum := sha256.Sum256([]byte(original))
	h := hex.EncodeToString(sum[:4])
	return original[:63-len(suffix)-len(h)-1] + "-" + h + suffix
}

func (in *Intake) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

func (in *Intake) workers() int {
	if in.Workers > 0 {
		return in.Workers
	}
	return runtime.GOMAXPROCS(0)
}

func (in *Intake) historyLimit() int {
	if in.HistoryLimit > 0 {
		return in.HistoryLimit
	}
	return 20
}

func (in *Intake) log() *slog.Logger {
	if in.Log != nil {
		return in.Log
	}
	return slog.New(slog.DiscardHandler)
}

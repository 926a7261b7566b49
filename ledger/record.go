package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/autofix/autofix/failure"
)

// Source is where a message came from on Kafka.
type Source struct {
	Topic     string
	Partition int
	Offset    int64
}

// Attempt is one re-submission of a job chain.
type Attempt struct {
	ChainID string
	// Number is the attempt number in the chain: the original run is 1, the first
	// retry 2.
	Number int
	// EventID is the remediation (failure event) that asked for the attempt.
	EventID string
	// JobName is the deterministic name of the new job; unique in its namespace.
	JobName string
	// Namespace is where the job runs: the failed job's (set by the ledger from the
	// remediation's event).
	Namespace string
	// Token is a random value, made by the ledger, that the attempt's Job carries
	// (an annotation): it tells autofix's Job from one that copied its labels.
	Token string
	// Option is the whole option the attempt runs with: besides Resources and
	// Params (which it repeats), its deadline, the nodes to avoid, the delay and
	// what it changes. Nil for attempts recorded before it was kept.
	Option    *failure.Option
	Resources failure.Resources
	Params    map[string]string
	// SubmittedAt is zero until the job is submitted.
	SubmittedAt time.Time
	// Outcome is "" until known, then "succeeded", "failed" or "abandoned".
	Outcome    string
	FinishedAt time.Time
}

// Entry is what the ingest loop records for one Kafka message.
type Entry struct {
	// EventID is the event's id (Event.ID when empty); for a rejected message the
	// caller passes an id of the message's position.
	EventID    string
	Source     Source
	ReceivedAt time.Time // the current time when zero
	// Event is nil for a rejected (malformed or invalid) message.
	Event *failure.Event
	// Error says why a message was rejected; with State Rejected and Event nil.
	Error string
	// ChainID is the job chain the event belongs to; required with an Event.
	ChainID string
	// Recommendation is nil for rejected messages.
	Recommendation *failure.Recommendation
	// State is the state the policy left the event in: PendingReview, Approved or
	// Rejected (the only one allowed, and the default, without an Event).
	State State
	// Reason is the policy's reason, for people.
	Reason string
	// Actor is who decided, e.g. "policy".
	Actor string
	// Attempt is the attempt to submit when State is Approved (Number, JobName,
	// Resources and Params set; ChainID and EventID default to the entry's). It is
	// required then, and ignored in other states.
	Attempt *Attempt
	// Grant is the seq of the autonomy grant that applied the fix on its own
	// (policy.Decision.Grant): the rules would have kept it for review. 0 when the
	// rules decided; only with State Approved. The grant's automatic revocation
	// watches these fixes (GrantOutcomes).
	Grant int64
	// Workload is the failed workload's API kind as kubernetes.kinds names it
	// (JobSet, RayJob, Workflow); "" or "Job" for a batch Job. Its kind of fix
	// (Kind.Workload) names it.
	Workload string
	// NoHistory keeps the failed run out of its template's history: an event autofix
	// could not verify must not teach the models, nor count in its chain.
	NoHistory bool

	// OutcomeSeq is set by Record on a fresh valid entry: the sequence number of the
	// failed run in its template's history (see HistorySince).
	OutcomeSeq int64
}

// Audit actions and actors the ledger writes itself.
const (
	actorAutofix = "autofix"
	actorLedger  = "ledger"
)

const eventCols = "event_id, namespace, job_name, template, template_key, kind, chain_id, attempt, " +
	"category, confidence, state, reason, error, event_json, recommendation_json, " +
	"received_at, updated_at, kafka_topic, kafka_partition, kafka_offset, autonomy_grant, workload"

const auditCols = "event_id, seq, created_at, actor, action, from_state, to_state, detail"

// EntryError is Record's error for an entry that can never be recorded as it is (it
// is inconsistent, or part of it cannot be encoded): nothing of the call was written,
// and the same entry will fail again.
type EntryError struct {
	// Index is the entry's index in Record's argument.
	Index   int
	EventID string
	Err     error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("record entry %d (%s): %v", e.Index, e.EventID, e.Err)
}

// Unwrap returns the cause.
func (e *EntryError) Unwrap() error { return e.Err }

// pending is an entry prepared for writing.
type pending struct {
	index   int // of the entry in Record's argument
	entry   Entry
	id      string
	at      time.Time
	event   []any // the events row
	attempt []any // the attempts row, nil if none
	shadow  []any // the shadow_predictions row, nil if none
	a       Attempt
	outcome *outcomeRow
}

// Record writes entries in one transaction and reports which were fresh. An entry
// whose EventID is already in the ledger, or earlier in entries, is skipped and its
// fresh flag is false; this holds for replicas recording the same ids at once.
//
// For a fresh valid entry it writes the event row, the audit rows of its path
// (received, classified, recommended, then State: actor "autofix" for the first
// three, Entry.Actor with Reason as detail for the decision), the Attempt if State is
// Approved, and the failed run as an outcome of its template's history. An approved
// entry whose attempt number (in its chain) or job name is already recorded is
// recorded as approved and then abandoned by actor "ledger", with the reason in the
// audit detail, so that no job is submitted twice. A rejected message (nil Event)
// writes the event row in state rejected with Error, and one audit row.
//
// An entry that is inconsistent (no id, an Event without ChainID, a state the policy
// cannot leave an event in, Approved without an Attempt) fails the whole call.
func (s *Store) Record(ctx context.Context, entries []Entry) (fresh []bool, err error) {
	return s.recordEntries(ctx, entries, true)
}

// errDryRun rolls back the transaction of Check.
var errDryRun = errors.New("dry run")

// Check does all that Record would do with entries, in a transaction it then rolls
// back: nil if they could be recorded now. Intake asks it, with an entry of its own
// making, whether a failure it sees is the ledger's or an entry's.
func (s *Store) Check(ctx context.Context, entries []Entry) error {
	_, err := s.recordEntries(ctx, entries, false)
	return err
}

func (s *Store) recordEntries(ctx context.Context, entries []Entry, commit bool) (fresh []bool, err error) {
	fresh = make([]bool, len(entries))
	var batch []*pending
	first := make(map[string]bool, len(entries))
	prepared := make([]*pending, len(entries))
	errs := make([]error, len(entries))
	// Encoding the events and recommendations is most of the CPU time outside SQLite:
	// spread it over the cores.
	parallel(len(entries), func(i int) { prepared[i], errs[i] = prepare(i, entries[i]) })
	for i, e := range entries {
		p, err := prepared[i], errs[i]
		if err != nil {
			return nil, &EntryError{Index: i, EventID: e.EventID, Err: err}
		}
		if !first[p.id] {
			first[p.id] = true
			batch = append(batch, p)
		}
	}
	if len(batch) == 0 {
		return fresh, nil
	}
	// One order for every writer: PostgreSQL takes row locks in this order, and
	// replicas that lock the same ids in the same order cannot deadlock.
	sort.Slice(batch, func(i, j int) bool { return batch[i].id < batch[j].id })
	seq := make([]int64, len(entries))
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		clear(fresh)
		clear(seq)
		if err := s.record(ctx, tx, batch, fresh, seq); err != nil || commit {
			return err
		}
		return errDryRun
	})
	if !commit && errors.Is(err, errDryRun) {
		return fresh, nil
	}
	if err != nil {
		return nil, fmt.Errorf("record %d entries: %w", len(entries), err)
	}
	for i := range entries {
		entries[i].OutcomeSeq = seq[i]
	}
	return fresh, nil
}

func (s *Store) record(ctx context.Context, tx *sql.Tx, batch []*pending, fresh []bool, seq []int64) error {
	rows := make([][]any, len(batch))
	for i, p := range batch {
		rows[i] = p.event
	}
	inserted := map[string]bool{}
	err := s.insertRows(ctx, tx, "events", eventCols, rows, "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
		func(r *sql.Rows) error {
			var id string
			err := r.Scan(&id)
			inserted[id] = true
			return err
		})
	if err != nil {
		return err
	}
	var written []*pending
	var attempts, shadows [][]any
	for _, p := range batch {
		if inserted[p.id] {
			fresh[p.index] = true
			written = append(written, p)
			if p.attempt != nil {
				attempts = append(attempts, p.attempt)
			}
			if p.shadow != nil {
				shadows = append(shadows, p.shadow)
			}
		}
	}
	if err := s.insertRows(ctx, tx, "shadow_predictions", shadowCols, shadows, "", nil); err != nil {
		return err
	}
	// The attempts' keys may be taken by another event: those entries are abandoned.
	took := map[string]bool{}
	if err := s.insertRows(ctx, tx, "attempts", attemptCols, attempts, "ON CONFLICT DO NOTHING RETURNING event_id",
		func(r *sql.Rows) error {
			var id string
			err := r.Scan(&id)
			took[id] = true
			return err
		}); err != nil {
		return err
	}
	var audit [][]any
	var outcomes []outcomeRow
	var withOutcome []*pending
	var abandoned []string
	// Outcomes join their templates' histories in the order of the entries (the order
	// of the messages), not the id order the rows are locked in.
	byIndex := slices.Clone(written)
	sort.Slice(byIndex, func(i, j int) bool { return byIndex[i].index < byIndex[j].index })
	for _, p := range byIndex {
		if p.outcome != nil {
			outcomes = append(outcomes, *p.outcome)
			withOutcome = append(withOutcome, p)
		}
	}
	for _, p := range written {
		rows := pathAudit(p)
		if p.attempt != nil && !took[p.id] {
			abandoned = append(abandoned, p.id)
			rows = append(rows, []any{p.id, len(rows) + 1, nanos(p.at), actorLedger, "abandon", string(Approved), string(Abandoned),
				fmt.Sprintf("attempt %d of chain %s or job %s/%s is already recorded", p.a.Number, p.a.ChainID, p.a.Namespace, p.a.JobName)})
		}
		audit = append(audit, rows...)
	}
	if err := chunks(abandoned, func(ids []string) error {
		_, err := tx.ExecContext(ctx, s.q("UPDATE events SET state = ? WHERE event_id IN ("+list(len(ids))+")"),
			append([]any{string(Abandoned)}, anys(ids)...)...)
		return err
	}); err != nil {
		return fmt.Errorf("abandon duplicate attempts: %w", err)
	}
	if err := s.insertRows(ctx, tx, "audit", auditCols, audit, "", nil); err != nil {
		return err
	}
	seqs, err := s.appendOutcomes(ctx, tx, outcomes)
	for i, p := range withOutcome {
		seq[p.index] = seqs[i]
	}
	return err
}

// prepare checks e and builds its rows.
func prepare(i int, e Entry) (*pending, error) {
	p := &pending{index: i, entry: e, id: e.EventID, at: e.ReceivedAt}
	if p.at.IsZero() {
		p.at = time.Now()
	}
	if e.Event != nil && p.id == "" {
		p.id = e.Event.ID
	}
	if p.id == "" {
		return nil, errors.New("event id: required")
	}
	src := e.Source
	if e.Event == nil {
		if e.State != "" && e.State != Rejected {
			return nil, fmt.Errorf("state %s: a message without an event can only be rejected", e.State)
		}
		p.entry.State = Rejected
		p.event = []any{p.id, "", "", "", "", "", e.ChainID, 0, "", 0.0, string(Rejected), e.Reason, e.Error, nil, nil,
			nanos(p.at), nanos(p.at), src.Topic, src.Partition, src.Offset, int64(0), ""}
		return p, nil
	}
	ev := e.Event
	switch {
	case e.ChainID == "":
		return nil, errors.New("chain id: required with an event")
	case e.State != PendingReview && e.State != Approved && e.State != Rejected:
		return nil, fmt.Errorf("state %q: want %s, %s or %s", e.State, PendingReview, Approved, Rejected)
	case e.State == Approved && e.Attempt == nil:
		return nil, errors.New("attempt: required with state approved")
	case e.Grant < 0 || e.Grant > 0 && e.State != Approved:
		return nil, fmt.Errorf("grant %d: want a grant's seq with state approved, or 0", e.Grant)
	case e.Workload != "" && !workloadRE.MatchString(e.Workload):
		return nil, fmt.Errorf("workload %.64q: want an API kind", e.Workload)
	}
	evJSON, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	var (
		recJSON    any
		category   failure.Category
		confidence float64
	)
	if r := e.Recommendation; r != nil {
		r = checkedShadow(r)
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encode recommendation: %w", err)
		}
		recJSON, category, confidence = string(b), r.Classification.Category, r.Classification.Confidence
		p.shadow = shadowRow(p.id, r, p.at)
	}
	key := failure.TemplateKey(ev.Job.Namespace, ev.Job.Template)
	p.event = []any{p.id, ev.Job.Namespace, ev.Job.Name, ev.Job.Template, key, string(ev.Job.Kind), e.ChainID,
		ev.Job.Attempt, string(category), confidence, string(e.State), e.Reason, e.Error, string(evJSON), recJSON,
		nanos(p.at), nanos(p.at), src.Topic, src.Partition, src.Offset, e.Grant, normWorkload(e.Workload)}
	if e.State == Approved {
		a := *e.Attempt
		if a.ChainID == "" {
			a.ChainID = e.ChainID
		}
		a.EventID, a.Namespace = p.id, ev.Job.Namespace
		p.a = a
		if p.attempt, err = attemptRow(a); err != nil {
			return nil, err
		}
	}
	if e.NoHistory {
		return p, nil
	}
	p.outcome = &outcomeRow{key: key, eventID: p.id, at: p.at, o: failure.Outcome{
		Template: ev.Job.Template, Attempt: ev.Job.Attempt, Resources: ev.Job.Resources, Params: ev.Job.Params,
		Succeeded: false, Category: category, DurationSeconds: ev.Failure.DurationSeconds,
		Usage: ev.Failure.Usage, Node: ev.Failure.Node, Cost: ev.Failure.Cost, Unpriced: ev.Failure.Unpriced,
	}}
	return p, nil
}

// pathAudit returns the audit rows of an entry's path to its state.
func pathAudit(p *pending) [][]any {
	e, at := p.entry, nanos(p.at)
	src := fmt.Sprintf("%s/%d@%d", e.Source.Topic, e.Source.Partition, e.Source.Offset)
	actor := e.Actor
	if actor == "" {
		actor = actorAutofix
	}
	if e.Event == nil {
		return [][]any{{p.id, 1, at, actor, "reject", "", string(Rejected), e.Error}}
	}
	classified, recommended := "", "no recommendation"
	if r := e.Recommendation; r != nil {
		c := r.Classification
		classified = fmt.Sprintf("%s (confidence %.2f)", c.Category, c.Confidence)
		recommended = "no retry"
		if o, ok := r.ChosenOption(); ok {
			recommended = "retry: " + strings.Join(o.Changes, "; ")
		}
	}
	return [][]any{
		{p.id, 1, at, actorAutofix, "receive", "", string(Received), "from " + src},
		{p.id, 2, at, actorAutofix, "classify", string(Received), string(Classified), classified},
		{p.id, 3, at, actorAutofix, "recommend", string(Classified), string(Recommended), recommended},
		{p.id, 4, at, actor, "decide", string(Recommended), string(e.State), e.Reason},
	}
}

// parallel calls fn(i) for i in [0, n) on up to GOMAXPROCS goroutines.
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/64+1)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
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

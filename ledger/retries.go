package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/autofix/autofix/failure"
)

// Retry is a remediation whose attempt ended, as the retry models learn from it: the
// failure, what was known of its template when it was decided, the option the attempt
// ran and how the attempt ended.
type Retry struct {
	EventID string
	// ReceivedAt is when the failure was received (and decided).
	ReceivedAt time.Time
	// Event is the failure as recorded, keeping what the models read (the job, the
	// reason, the exit code, the duration, the node) and leaving out what its
	// publisher claimed of usage and cost (Usage and Cost are zero, Unpriced is
	// UnpricedClaim) and its text (Message, LogTail: the classification in Category
	// stands for it).
	Event failure.Event
	// Category is the failure's classification, as the remediation recorded it.
	Category failure.Category
	// History is the template's history as it was before the failure was received:
	// its last outcomes (at most the limit asked for) recorded strictly earlier,
	// oldest first. Outcomes of attempts autofix ran are as their Finish recorded
	// them; failed runs recorded from events keep neither usage nor cost (Unpriced
	// is UnpricedClaim).
	History []failure.Outcome
	// Option is the whole option the attempt ran with.
	Option failure.Option
	// Outcome is the attempt's outcome as the caller of Finish measured it (autofix's
	// watcher, for the Job it created): whether it succeeded, its duration, usage
	// and cost.
	Outcome failure.Outcome
	// Result is the classification of the attempt's own failure, when it failed and
	// its failure event was received: the event of the attempt's Job placed in the
	// attempt's chain at its number. Empty otherwise.
	Result failure.Category
}

// UnpricedClaim is the Unpriced of a run whose event's claims of usage and cost
// Retry leaves out: its Cost of 0 is not a price.
const UnpricedClaim = "what its event claimed of usage and cost is not used"

// RetryFilter selects the remediations EachRetry reads.
type RetryFilter struct {
	// Since and Until bound the failures' received time: Since <= received < Until.
	// Only what was recorded before Until is read (the attempts' ends, their outcomes,
	// the histories); zero Until is the time of the call.
	Since, Until time.Time
	// HistoryLimit is how many of the template's latest outcomes each retry's history
	// keeps (the engine's intake gives its decisions 20); required.
	HistoryLimit int
}

// RetryStats counts what EachRetry read.
type RetryStats struct {
	// Retries is how many it passed to its callback.
	Retries int
	// Unreadable are remediations left out because a stored part of them (the event,
	// the recommendation, the attempt, its outcome) does not decode or holds values no
	// run has.
	Unreadable int
	// NoOutcome are remediations whose attempt ended without an outcome in the
	// history (one recorded before outcomes were kept, or pruned).
	NoOutcome int
}

// retryQuery reads the remediations whose own attempt succeeded or failed before the
// cutoff, with that attempt, the outcome its Finish recorded, and the classification
// of the attempt's own failure, by template then by received time.
const retryQuery = `SELECT e.template_key, e.event_id, e.received_at, e.category, e.event_json, e.recommendation_json,
	a.number, a.resources, a.params, a.option_json, a.outcome, a.job_name, fo.outcome,
	(SELECT r.category FROM events r WHERE r.chain_id = a.chain_id AND r.attempt = a.number
		AND r.namespace = e.namespace AND r.job_name = a.job_name AND r.category <> '' AND r.received_at < ?
		ORDER BY r.received_at, r.event_id LIMIT 1)
	FROM events e
	JOIN attempts a ON a.event_id = e.event_id
	LEFT JOIN outcomes fo ON fo.event_id = e.event_id AND fo.attempt = a.number AND fo.recorded_at < ?
	WHERE e.state IN (?, ?) AND a.outcome IN (?, ?) AND a.finished_at < ? AND e.received_at >= ? AND e.received_at < ?
	ORDER BY e.template_key%s, e.received_at, e.event_id`

// historyQuery reads every outcome recorded before the cutoff, by template then by
// the time it was recorded (in the order of its history for those recorded at once:
// a history is in time order but for the clocks of replicas, and the cut by time
// needs the order of time), saying whether it is an attempt's (one Finish recorded:
// its event's attempt carries its number) or a failed run an event reported.
const historyQuery = `SELECT o.template_key, o.recorded_at, o.outcome,
	CASE WHEN EXISTS (SELECT 1 FROM attempts a WHERE a.event_id = o.event_id AND a.number = o.attempt) THEN 1 ELSE 0 END
	FROM outcomes o WHERE o.recorded_at < ?
	ORDER BY o.template_key%s, o.recorded_at, o.seq`

// EachRetry calls fn, template by template (in byte order of their keys,
// namespace/template, so that the templates of a namespace come together) and by
// received time within each, for
// every remediation received in f's window whose own attempt succeeded or failed,
// with what the models learn from (see Retry). Nothing recorded at or after the
// failure's received time is in its history: a retry that ended later, another
// failure of the template received later. Remediations that were rejected, are not
// over, were abandoned or whose attempt has no outcome are not passed; nor are
// those whose stored parts do not decode (counted in the stats).
//
// It streams: it holds one retry and one template's window of history at a time.
// It reads with two queries, each its own snapshot, bounded by f.Until.
func (s *Store) EachRetry(ctx context.Context, f RetryFilter, fn func(*Retry) error) (RetryStats, error) {
	var stats RetryStats
	if f.HistoryLimit <= 0 {
		return stats, fmt.Errorf("each retry: history limit %d, want positive", f.HistoryLimit)
	}
	until := f.Until
	if until.IsZero() {
		until = time.Now()
	}
	// Both streams in the same byte order of template keys, which the merge compares
	// as Go does: PostgreSQL's default collation is the database's locale.
	collate := ""
	if s.backend == backendPostgres {
		collate = ` COLLATE "C"`
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hist, err := s.r.QueryContext(ctx, s.q(fmt.Sprintf(historyQuery, collate)), nanos(until))
	if err != nil {
		return stats, fmt.Errorf("each retry: history: %w", err)
	}
	defer func() { _ = hist.Close() }()
	rows, err := s.r.QueryContext(ctx, s.q(fmt.Sprintf(retryQuery, collate)),
		nanos(until), nanos(until), string(Succeeded), string(Failed), string(Succeeded), string(Failed),
		nanos(until), nanos(f.Since), nanos(until))
	if err != nil {
		return stats, fmt.Errorf("each retry: %w", err)
	}
	defer func() { _ = rows.Close() }()
	h := historyStream{rows: hist, limit: f.HistoryLimit}
	var lastKey, lastID string
	for rows.Next() {
		var rr retryRow
		if err := rr.scan(rows); err != nil {
			return stats, fmt.Errorf("each retry: %w", err)
		}
		if rr.key < lastKey {
			return stats, fmt.Errorf("each retry: remediations out of template order (%q after %q)", rr.key, lastKey)
		}
		if rr.id == lastID {
			continue // one attempt, one outcome: a second row would be a damaged ledger
		}
		lastKey, lastID = rr.key, rr.id
		history, err := h.before(rr.key, rr.received)
		if err != nil {
			return stats, fmt.Errorf("each retry: history: %w", err)
		}
		r, status := rr.retry()
		switch status {
		case retryUnreadable:
			stats.Unreadable++
			continue
		case retryNoOutcome:
			stats.NoOutcome++
			continue
		}
		r.History = history
		stats.Retries++
		if err := fn(r); err != nil {
			return stats, err
		}
	}
	if err := rows.Err(); err != nil {
		return stats, fmt.Errorf("each retry: %w", err)
	}
	return stats, nil
}

// retryRow is a row of retryQuery.
type retryRow struct {
	key, id, category               string
	received                        int64
	event, rec                      sql.NullString
	number                          int
	res, params, option, ended, job string
	outcome, result                 sql.NullString
}

func (rr *retryRow) scan(r *sql.Rows) error {
	return r.Scan(&rr.key, &rr.id, &rr.received, &rr.category, &rr.event, &rr.rec,
		&rr.number, &rr.res, &rr.params, &rr.option, &rr.ended, &rr.job, &rr.outcome, &rr.result)
}

type retryStatus int

const (
	retryOK retryStatus = iota
	retryUnreadable
	retryNoOutcome
)

// retry decodes the row.
func (rr *retryRow) retry() (*Retry, retryStatus) {
	r := &Retry{EventID: rr.id, ReceivedAt: fromNanos(rr.received), Category: failure.Category(rr.category)}
	if !rr.event.Valid || !r.Category.Valid() {
		return nil, retryUnreadable
	}
	if err := json.Unmarshal([]byte(rr.event.String), &r.Event); err != nil {
		return nil, retryUnreadable
	}
	sig := &r.Event.Failure
	sig.Usage, sig.Cost, sig.Unpriced = failure.Usage{}, 0, UnpricedClaim
	sig.Message, sig.LogTail, sig.LogTruncated = "", "", false
	a, err := decodeAttempt("", rr.number, rr.id, rr.job, "", rr.res, rr.params, 0, rr.ended, 0, rr.option, "")
	if err != nil {
		return nil, retryUnreadable
	}
	if a.Option != nil {
		r.Option = *a.Option
	} else if rr.rec.Valid {
		// Recorded before attempts kept their option: the recommendation's chosen one.
		var rec failure.Recommendation
		if err := json.Unmarshal([]byte(rr.rec.String), &rec); err != nil {
			return nil, retryUnreadable
		}
		r.Option, _ = rec.ChosenOption()
	}
	r.Option.Resources, r.Option.Params = a.Resources, a.Params
	if r.Option.Check() != nil {
		return nil, retryUnreadable
	}
	if !rr.outcome.Valid {
		return nil, retryNoOutcome
	}
	o, ok := decodeOutcome(rr.outcome.String)
	if !ok || o.Succeeded != (rr.ended == string(Succeeded)) {
		return nil, retryUnreadable
	}
	r.Outcome = o
	if !o.Succeeded && rr.result.Valid {
		if c := failure.Category(rr.result.String); c.Valid() {
			r.Result = c
		}
	}
	return r, retryOK
}

// historyStream walks historyQuery's rows alongside the remediations, keeping the
// window of the current template's history.
type historyStream struct {
	rows   *sql.Rows
	limit  int
	key    string // of the window
	window []failure.Outcome
	// The row read and not yet taken: one recorded at or after the time asked about
	// last, or of a later template.
	next    *historyRow
	lastKey string
	lastAt  int64
	done    bool
}

type historyRow struct {
	key      string
	recorded int64
	o        failure.Outcome
	ok       bool // decodes
}

// before returns a copy of the last outcomes of template key recorded before
// received (unix nanoseconds). Calls come in the order of historyQuery: by key, and
// by time within a key.
func (h *historyStream) before(key string, received int64) ([]failure.Outcome, error) {
	if key != h.key {
		h.key, h.window = key, h.window[:0]
	}
	for {
		if h.next == nil {
			row, err := h.read()
			if err != nil {
				return nil, err
			}
			if row == nil {
				break
			}
			h.next = row
		}
		n := h.next
		if n.key < key {
			h.next = nil // a template without retries in the window, or past its last one
			continue
		}
		// In time order: the first recorded at or after received ends the window.
		if n.key > key || n.recorded >= received {
			break
		}
		h.next = nil
		if n.ok {
			h.window = append(h.window, n.o)
			if len(h.window) > h.limit {
				h.window = slices.Delete(h.window, 0, len(h.window)-h.limit)
			}
		}
	}
	return slices.Clone(h.window), nil
}

// read returns the next row, nil at the end.
func (h *historyStream) read() (*historyRow, error) {
	if h.done || !h.rows.Next() {
		h.done = true
		return nil, h.rows.Err()
	}
	var (
		r        historyRow
		data     string
		measured int
	)
	if err := h.rows.Scan(&r.key, &r.recorded, &data, &measured); err != nil {
		return nil, err
	}
	if r.key < h.lastKey || r.key == h.lastKey && r.recorded < h.lastAt {
		return nil, fmt.Errorf("outcomes out of order (%q at %d after %q at %d)", r.key, r.recorded, h.lastKey, h.lastAt)
	}
	h.lastKey, h.lastAt = r.key, r.recorded
	r.o, r.ok = decodeOutcome(data)
	if r.ok && measured == 0 {
		// A failed run as its event reported it: what it says it used and cost is its
		// publisher's claim, which no model learns from.
		r.o.Usage, r.o.Cost, r.o.Unpriced = failure.Usage{}, 0, UnpricedClaim
	}
	return &r, nil
}

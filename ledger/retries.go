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
	// History is the template's history as serve's decision of the failure read it:
	// its last outcomes (at most the limit asked for) appended to it before the
	// failure's own run was, in the order they were appended — not by their times,
	// which come from the clocks of the replicas that recorded them. Outcomes of attempts autofix ran are as their Finish recorded
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
	// history, or whose failed run is not in it (recorded before outcomes were
	// kept, or pruned): without its place, what its decision saw is not known.
	NoOutcome int
}

// retryQuery reads the remediations whose own attempt succeeded or failed before the
// cutoff, with that attempt, the outcome its Finish recorded, the classification of
// the attempt's own failure, and the place of the failed run in its template's
// history (NULL when it has none), by template then by that place.
const retryQuery = `SELECT e.template_key, e.event_id, e.received_at, e.category, e.event_json, e.recommendation_json,
	a.number, a.resources, a.params, a.option_json, a.outcome, a.job_name, fo.outcome, fs.seq,
	(SELECT r.category FROM events r WHERE r.chain_id = a.chain_id AND r.attempt = a.number
		AND r.namespace = e.namespace AND r.job_name = a.job_name AND r.category <> '' AND r.received_at < ?
		ORDER BY r.received_at, r.event_id LIMIT 1)
	FROM events e
	JOIN attempts a ON a.event_id = e.event_id
	LEFT JOIN outcomes fo ON fo.event_id = e.event_id AND fo.attempt = a.number AND fo.recorded_at < ?
	LEFT JOIN outcomes fs ON fs.event_id = e.event_id AND fs.template_key = e.template_key AND fs.attempt = e.attempt
	WHERE e.state IN (?, ?) AND a.outcome IN (?, ?) AND a.finished_at < ? AND e.received_at >= ? AND e.received_at < ?
	ORDER BY e.template_key%s, fs.seq, e.event_id`

// historyQuery reads every outcome recorded before the cutoff, by template then in
// the order it was appended to the template's history (seq), saying whether it is
// an attempt's (one Finish recorded: its event's attempt carries its number) or a
// failed run an event reported.
const historyQuery = `SELECT o.template_key, o.seq, o.outcome,
	CASE WHEN EXISTS (SELECT 1 FROM attempts a WHERE a.event_id = o.event_id AND a.number = o.attempt) THEN 1 ELSE 0 END
	FROM outcomes o WHERE o.recorded_at < ?
	ORDER BY o.template_key%s, o.seq`

// EachRetry calls fn, template by template (in byte order of their keys,
// namespace/template, so that the templates of a namespace come together) and in
// the order their failures joined the template's history within each, for
// every remediation received in f's window whose own attempt succeeded or failed,
// with what the models learn from (see Retry). A history is cut where the failure's
// own run joined it, by the order of the history and not by time: nothing appended
// after it (a retry that ended later, another failure of the template received
// later) is in it, however far apart the clocks of the replicas that recorded them,
// and what serve's decision saw is (a failure decided just before in the same
// batch, received at the same instant). Remediations that were rejected, are not
// over, were abandoned or whose attempt or failed run has no outcome are not
// passed; nor are those whose stored parts do not decode (counted in the stats).
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
	var (
		lastKey, lastID string
		lastSeq         int64
	)
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
		lastID = rr.id
		if !rr.seq.Valid {
			// Its failed run is not in the history (sorted first or last by the
			// backend): nothing to cut the history at.
			stats.NoOutcome++
			continue
		}
		if rr.key == lastKey && rr.seq.Int64 < lastSeq {
			return stats, fmt.Errorf("each retry: remediations out of history order (%d after %d of %q)", rr.seq.Int64, lastSeq, rr.key)
		}
		lastKey, lastSeq = rr.key, rr.seq.Int64
		history, err := h.before(rr.key, rr.seq.Int64)
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
	seq                             sql.NullInt64 // of the failed run in its template's history
}

func (rr *retryRow) scan(r *sql.Rows) error {
	return r.Scan(&rr.key, &rr.id, &rr.received, &rr.category, &rr.event, &rr.rec,
		&rr.number, &rr.res, &rr.params, &rr.option, &rr.ended, &rr.job, &rr.outcome, &rr.seq, &rr.result)
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
	// The row read and not yet taken: one at or after the place asked about last,
	// or of a later template.
	next    *historyRow
	lastKey string
	lastSeq int64
	done    bool
}

type historyRow struct {
	key string
	seq int64
	o   failure.Outcome
	ok  bool // decodes
}

// before returns a copy of the last outcomes of template key appended before seq.
// Calls come in the order of historyQuery: by key, and by seq within a key.
func (h *historyStream) before(key string, seq int64) ([]failure.Outcome, error) {
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
		// In history order: the failure's own run, or any after it, ends the window.
		if n.key > key || n.seq >= seq {
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
	if err := h.rows.Scan(&r.key, &r.seq, &data, &measured); err != nil {
		return nil, err
	}
	if r.key < h.lastKey || r.key == h.lastKey && r.seq < h.lastSeq {
		return nil, fmt.Errorf("outcomes out of order (%q %d after %q %d)", r.key, r.seq, h.lastKey, h.lastSeq)
	}
	h.lastKey, h.lastSeq = r.key, r.seq
	r.o, r.ok = decodeOutcome(data)
	if r.ok && measured == 0 {
		// A failed run as its event reported it: what it says it used and cost is its
		// publisher's claim, which no model learns from.
		r.o.Usage, r.o.Cost, r.o.Unpriced = failure.Usage{}, 0, UnpricedClaim
	}
	return &r, nil
}

package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/autofix/autofix/failure"
)

// SeenErrors reports which of ids are already in the ledger (only those are in the
// map), each with the error it was rejected with ("" for an event that was decided,
// or rejected for a reason rather than an error).
func (s *Store) SeenErrors(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string)
	err := chunks(ids, func(c []string) error {
		return queryEach(ctx, s.r, s.q("SELECT event_id, error FROM events WHERE event_id IN ("+list(len(c))+")"), anys(c),
			func(r *sql.Rows) error {
				var id, e string
				err := r.Scan(&id, &e)
				out[id] = e
				return err
			})
	})
	if err != nil {
		return nil, fmt.Errorf("seen: %w", err)
	}
	return out, nil
}

// History returns, per template key (namespace + "/" + template), its last limit
// outcomes (all of them when limit <= 0), oldest first. Templates without history
// are not in the map.
func (s *Store) History(ctx context.Context, templates []string, limit int) (map[string][]failure.Outcome, error) {
	out := make(map[string][]failure.Outcome)
	err := chunks(templates, func(c []string) error {
		query := "SELECT o.template_key, o.outcome FROM outcomes o JOIN template_seq t ON t.template_key = o.template_key" +
			" WHERE o.template_key IN (" + list(len(c)) + ")"
		args := anys(c)
		if limit > 0 {
			// Sequence numbers are dense, so the last limit are those above seq - limit.
			query += " AND o.seq > t.seq - ?"
			args = append(args, limit)
		}
		return queryEach(ctx, s.r, s.q(query+" ORDER BY o.template_key, o.seq"), args, func(r *sql.Rows) error {
			var key, data string
			if err := r.Scan(&key, &data); err != nil {
				return err
			}
			if o, ok := decodeOutcome(data); ok {
				out[key] = append(out[key], o)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return out, nil
}

// TemplateHistory is what HistorySince found of one template.
type TemplateHistory struct {
	// Outcomes are those recorded after the sequence number asked about, oldest first.
	Outcomes []failure.Outcome
	// Seq is the sequence number of the template's last outcome (0: none yet).
	Seq int64
}

// HistorySince is History for a caller that keeps what it has read: for each
// template key in after, it returns the outcomes recorded after sequence number
// after[key] (at most the last limit of them) and the template's last sequence
// number, decoding only what is new.
func (s *Store) HistorySince(ctx context.Context, after map[string]int64, limit int) (map[string]TemplateHistory, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("history since: limit %d, want positive", limit)
	}
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]TemplateHistory, len(keys))
	// First the last sequence numbers (cheap), then the outcomes of the templates that
	// have new ones, decoding only those.
	var changed []string
	err := chunks(keys, func(c []string) error {
		query := "SELECT template_key, seq FROM template_seq WHERE template_key IN (" + list(len(c)) + ")"
		return queryEach(ctx, s.r, s.q(query), anys(c), func(r *sql.Rows) error {
			var (
				key string
				seq int64
			)
			if err := r.Scan(&key, &seq); err != nil {
				return err
			}
			out[key] = TemplateHistory{Seq: seq}
			if seq > after[key] {
				changed = append(changed, key)
			}
			return nil
		})
	})
	if err == nil {
		sort.Strings(changed)
		err = chunks(changed, func(c []string) error {
			query := "SELECT o.template_key, o.seq, o.outcome FROM outcomes o JOIN template_seq t ON t.template_key = o.template_key" +
				" WHERE o.template_key IN (" + list(len(c)) + ") AND o.seq > t.seq - ? ORDER BY o.template_key, o.seq"
			return queryEach(ctx, s.r, s.q(query), append(anys(c), limit), func(r *sql.Rows) error {
				var (
					key, data string
					seq       int64
				)
				if err := r.Scan(&key, &seq, &data); err != nil {
					return err
				}
				if seq <= after[key] {
					return nil
				}
				h := out[key]
				if o, ok := decodeOutcome(data); ok {
					h.Outcomes = append(h.Outcomes, o)
				}
				h.Seq = max(h.Seq, seq)
				out[key] = h
				return nil
			})
		})
	}
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return out, nil
}

// ChainAttempts returns, per chain id, the highest attempt number recorded in the
// chain: of its failed runs (the events' attempt) and of its re-submissions; 0 if
// none. Every id asked for is in the map.
func (s *Store) ChainAttempts(ctx context.Context, chains []string) (map[string]int, error) {
	out := make(map[string]int, len(chains))
	for _, c := range chains {
		out[c] = 0
	}
	err := chunks(chains, func(c []string) error {
		in := list(len(c))
		query := "SELECT chain_id, MAX(n) FROM (" +
			"SELECT chain_id, number AS n FROM attempts WHERE chain_id IN (" + in + ") UNION ALL " +
			"SELECT chain_id, attempt AS n FROM events WHERE chain_id IN (" + in + ")) x GROUP BY chain_id"
		return queryEach(ctx, s.r, s.q(query), append(anys(c), anys(c)...), func(r *sql.Rows) error {
			var (
				id string
				n  int
			)
			err := r.Scan(&id, &n)
			out[id] = n
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("chain attempts: %w", err)
	}
	return out, nil
}

// Filter selects remediations for List. Zero fields do not filter.
type Filter struct {
	States    []State
	Category  failure.Category
	Namespace string
	// Job is the failed job's name.
	Job string
	// Since and Until bound the received time: Since <= received < Until.
	Since, Until time.Time
	// After is the cursor: the id of the last item of the previous page.
	After string
	// Limit is the page size: 100 when 0, at most 1000.
	Limit int
}

// List page size.
const (
	defaultPage = 100
	maxPage     = 1000
)

// List returns the remediations f selects, newest received first, a page at a time
// (keyset pagination on received time and id), each with its own attempt. A cursor
// (After) the ledger does not hold is ErrNotFound.
func (s *Store) List(ctx context.Context, f Filter) ([]Remediation, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultPage
	}
	limit = min(limit, maxPage)
	var (
		where []string
		args  []any
	)
	if len(f.States) > 0 {
		where = append(where, "e.state IN ("+list(len(f.States))+")")
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	for _, c := range []struct{ col, v string }{
		{"e.category", string(f.Category)}, {"e.namespace", f.Namespace}, {"e.job_name", f.Job},
	} {
		if c.v != "" {
			where, args = append(where, c.col+" = ?"), append(args, c.v)
		}
	}
	if !f.Since.IsZero() {
		where, args = append(where, "e.received_at >= ?"), append(args, nanos(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, "e.received_at < ?"), append(args, nanos(f.Until))
	}
	if f.After != "" {
		var at int64
		err := s.r.QueryRowContext(ctx, s.q("SELECT received_at FROM events WHERE event_id = ?"), f.After).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("list after %s: %w", f.After, ErrNotFound)
		} else if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		where = append(where, "(e.received_at < ? OR (e.received_at = ? AND e.event_id < ?))")
		args = append(args, at, at, f.After)
	}
	query := selectRemediation
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY e.received_at DESC, e.event_id DESC, a.number LIMIT ?"
	args = append(args, limit)
	var out []Remediation
	err := eachRemediation(ctx, s.r, s.q(query), args, func(m Remediation) error {
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	return out, nil
}

// EachOutcome calls fn for every outcome in the ledger's history, by template key
// then in order: the runs the models can learn from.
func (s *Store) EachOutcome(ctx context.Context, fn func(templateKey string, o failure.Outcome) error) error {
	return queryEach(ctx, s.r, "SELECT template_key, outcome FROM outcomes ORDER BY template_key, seq", nil, func(r *sql.Rows) error {
		var key, data string
		if err := r.Scan(&key, &data); err != nil {
			return err
		}
		o, ok := decodeOutcome(data)
		if !ok {
			return nil
		}
		return fn(key, o)
	})
}

// decodeOutcome decodes a stored outcome. One that does not decode, or holds values
// no run has (written by an older version under looser limits, or by hand), is left
// out of the history: a bad row must not stop every decision about its template.
func decodeOutcome(data string) (failure.Outcome, bool) {
	var o failure.Outcome
	if err := json.Unmarshal([]byte(data), &o); err != nil {
		return failure.Outcome{}, false
	}
	if o.Check() != nil {
		return failure.Outcome{}, false
	}
	return o, true
}

// JobKey names a Job: its namespace and name.
type JobKey struct{ Namespace, Name string }

// AttemptsByJob returns the attempts autofix recorded under the given job names,
// by job: what autofix itself knows of a Job it created (its chain and number), as
// opposed to what the Job's labels claim. Jobs with no attempt are not in the map.
func (s *Store) AttemptsByJob(ctx context.Context, jobs []JobKey) (map[JobKey]Attempt, error) {
	out := make(map[JobKey]Attempt)
	byNS := map[string][]string{}
	var namespaces []string
	seen := map[JobKey]bool{}
	for _, j := range jobs {
		if seen[j] {
			continue
		}
		seen[j] = true
		if _, ok := byNS[j.Namespace]; !ok {
			namespaces = append(namespaces, j.Namespace)
		}
		byNS[j.Namespace] = append(byNS[j.Namespace], j.Name)
	}
	// One namespace and a flat IN list of names per query, which the (namespace,
	// job_name) index answers (an OR of pairs grows SQLite's expression tree past its
	// depth limit at about a thousand terms).
	for _, ns := range namespaces {
		err := chunks(byNS[ns], func(c []string) error {
			return queryEach(ctx, s.r, s.q("SELECT "+attemptCols+" FROM attempts WHERE namespace = ? AND job_name IN ("+list(len(c))+")"),
				append([]any{ns}, anys(c)...), func(r *sql.Rows) error {
					a, _, err := scanAttempt(r) // chain and number are what is asked for; they always decode
					if err != nil {
						return err
					}
					out[JobKey{a.Namespace, a.JobName}] = a
					return nil
				})
		})
		if err != nil {
			return nil, fmt.Errorf("attempts by job: %w", err)
		}
	}
	return out, nil
}

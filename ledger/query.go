package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/autofix/autofix/failure"
)

// Remediation is one event's record, as the ledger holds it.
type Remediation struct {
	EventID, ChainID, Namespace, JobName, Template, Kind string
	// Attempt is the failed run's attempt number.
	Attempt    int
	State      State
	Category   failure.Category
	Confidence float64
	Reason     string
	// Error says why a rejected message was rejected.
	Error      string
	Source     Source
	ReceivedAt time.Time
	// UpdatedAt is when the state last changed.
	UpdatedAt time.Time
	// Event and Recommendation are nil for a rejected message.
	Event          *failure.Event
	Recommendation *failure.Recommendation
	// Attempts are the attempts of its chain by number (Get fills all of them;
	// List, Each and Approved fill the remediation's own attempt only).
	Attempts []Attempt
	// Audit is the remediation's audit trail, oldest first (Get only).
	Audit []AuditEntry
	// Correction is the correction of its classification in force (the latest a
	// person made), nil if none (Get only).
	Correction *Correction
	// Unreadable, when set, says which stored part of the remediation could not be
	// decoded (written under older, looser limits, or damaged): such a remediation is
	// listed, so that nothing is hidden, but never acted on.
	Unreadable string
}

// AuditEntry is one line of the audit trail. Action is what happened: receive,
// classify, recommend, decide (the policy's verdict) and reject (a malformed
// message) from Record; transition, approve, reject and finish from the calls of
// those names; abandon when Record found an approved attempt already taken; pause
// and resume (event id "") from SetPaused; correct from Correct.
type AuditEntry struct {
	At            time.Time
	Actor, Action string
	From, To      State
	Detail        string
}

// selectRemediation reads events joined with their own attempt; scan with scanRow.
const selectRemediation = `SELECT e.event_id, e.chain_id, e.namespace, e.job_name, e.template, e.kind, e.attempt,
	e.state, e.category, e.confidence, e.reason, e.error, e.kafka_topic, e.kafka_partition, e.kafka_offset,
	e.received_at, e.updated_at, e.event_json, e.recommendation_json,
	a.chain_id, a.number, a.event_id, a.job_name, a.resources, a.params, a.submitted_at, a.outcome, a.finished_at, a.namespace, a.option_json, a.token
	FROM events e LEFT JOIN attempts a ON a.event_id = e.event_id`

// scanRow reads a row of selectRemediation: the remediation and its attempt, if any.
func scanRow(r *sql.Rows) (Remediation, *Attempt, error) {
	var (
		m                    Remediation
		state, cat           string
		recv, upd            int64
		evJSON, recJSON      sql.NullString
		aChain, aEvent, aJob sql.NullString
		aNamespace, aOption  sql.NullString
		aToken               sql.NullString
		aRes, aParams, aOut  sql.NullString
		aNum                 sql.NullInt64
		aSub, aFin           sql.NullInt64
	)
	err := r.Scan(&m.EventID, &m.ChainID, &m.Namespace, &m.JobName, &m.Template, &m.Kind, &m.Attempt,
		&state, &cat, &m.Confidence, &m.Reason, &m.Error, &m.Source.Topic, &m.Source.Partition, &m.Source.Offset,
		&recv, &upd, &evJSON, &recJSON,
		&aChain, &aNum, &aEvent, &aJob, &aRes, &aParams, &aSub, &aOut, &aFin, &aNamespace, &aOption, &aToken)
	if err != nil {
		return Remediation{}, nil, err
	}
	m.State, m.Category = State(state), failure.Category(cat)
	m.ReceivedAt, m.UpdatedAt = fromNanos(recv), fromNanos(upd)
	// A row that does not decode is reported, not fatal: one bad row must not stop
	// every list (the dispatcher's among them).
	if evJSON.Valid {
		m.Event = new(failure.Event)
		if err := json.Unmarshal([]byte(evJSON.String), m.Event); err != nil {
			m.Event, m.Unreadable = nil, fmt.Sprintf("the stored event: %v", err)
		}
	}
	if recJSON.Valid {
		m.Recommendation = new(failure.Recommendation)
		if err := json.Unmarshal([]byte(recJSON.String), m.Recommendation); err != nil {
			m.Recommendation, m.Unreadable = nil, fmt.Sprintf("the stored recommendation: %v", err)
		}
	}
	if !aNum.Valid {
		return m, nil, nil
	}
	a, err := decodeAttempt(aChain.String, int(aNum.Int64), aEvent.String, aJob.String, aNamespace.String, aRes.String, aParams.String,
		aSub.Int64, aOut.String, aFin.Int64, aOption.String, aToken.String)
	if err != nil {
		m.Unreadable = err.Error()
	}
	return m, &a, nil
}

// scanAttempt reads a row of attemptCols. A row whose stored JSON does not decode is
// returned as far as it goes, with the reason in unreadable.
func scanAttempt(r *sql.Rows) (a Attempt, unreadable error, err error) {
	var (
		chain, event, job, res, params, outcome, namespace, option, token string
		number                                                            int
		sub, fin                                                          int64
	)
	if err := r.Scan(&chain, &number, &event, &job, &res, &params, &sub, &outcome, &fin, &namespace, &option, &token); err != nil {
		return Attempt{}, nil, err
	}
	a, unreadable = decodeAttempt(chain, number, event, job, namespace, res, params, sub, outcome, fin, option, token)
	return a, unreadable, nil
}

func decodeAttempt(chain string, number int, eventID, job, namespace, res, params string, submitted int64, outcome string,
	finished int64, option, token string) (Attempt, error) {
	a := Attempt{ChainID: chain, Number: number, EventID: eventID, JobName: job, Namespace: namespace, Outcome: outcome, Token: token,
		SubmittedAt: fromNanos(submitted), FinishedAt: fromNanos(finished)}
	if err := json.Unmarshal([]byte(res), &a.Resources); err != nil {
		return a, fmt.Errorf("the stored resources of attempt %s: %w", job, err)
	}
	if err := json.Unmarshal([]byte(params), &a.Params); err != nil {
		return a, fmt.Errorf("the stored params of attempt %s: %w", job, err)
	}
	if option != "" {
		a.Option = new(failure.Option)
		if err := json.Unmarshal([]byte(option), a.Option); err != nil {
			a.Option = nil
			return a, fmt.Errorf("the stored option of attempt %s: %w", job, err)
		}
	}
	return a, nil
}

// eachRemediation runs query (a selectRemediation ordered by event) and calls fn for
// each remediation with its own attempts, streaming the rows.
func eachRemediation(ctx context.Context, db querier, query string, args []any, fn func(Remediation) error) error {
	var (
		cur  Remediation
		have bool
	)
	err := queryEach(ctx, db, query, args, func(r *sql.Rows) error {
		m, a, err := scanRow(r)
		if err != nil {
			return err
		}
		if have && m.EventID == cur.EventID {
			if a != nil {
				cur.Attempts = append(cur.Attempts, *a)
			}
			return nil
		}
		if have {
			if err := fn(cur); err != nil {
				return err
			}
		}
		cur, have = m, true
		if a != nil {
			cur.Attempts = []Attempt{*a}
		}
		return nil
	})
	if err != nil || !have {
		return err
	}
	return fn(cur)
}

// Get returns remediation id with all the attempts of its chain and its audit trail.
func (s *Store) Get(ctx context.Context, id string) (Remediation, error) {
	var m Remediation
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		found := false
		err := eachRemediation(ctx, tx, s.q(selectRemediation+" WHERE e.event_id = ?"), []any{id}, func(r Remediation) error {
			m, found = r, true
			return nil
		})
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("remediation %s: %w", id, ErrNotFound)
		}
		if m.ChainID != "" {
			m.Attempts = nil
			err = queryEach(ctx, tx, s.q("SELECT "+attemptCols+" FROM attempts WHERE chain_id = ? ORDER BY number"),
				[]any{m.ChainID}, func(r *sql.Rows) error {
					a, unreadable, err := scanAttempt(r)
					if err != nil {
						return err
					}
					if unreadable != nil && a.EventID == m.EventID {
						m.Unreadable = unreadable.Error()
					}
					m.Attempts = append(m.Attempts, a)
					return nil
				})
			if err != nil {
				return err
			}
		}
		if m.Correction, err = s.latestCorrection(ctx, tx, id); err != nil {
			return err
		}
		return queryEach(ctx, tx, s.q("SELECT created_at, actor, action, from_state, to_state, detail FROM audit WHERE event_id = ? ORDER BY seq"),
			[]any{id}, func(r *sql.Rows) error {
				var (
					a        AuditEntry
					at       int64
					from, to string
				)
				err := r.Scan(&at, &a.Actor, &a.Action, &from, &to, &a.Detail)
				a.At, a.From, a.To = fromNanos(at), State(from), State(to)
				m.Audit = append(m.Audit, a)
				return err
			})
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Remediation{}, err
		}
		return Remediation{}, fmt.Errorf("get %s: %w", id, err)
	}
	return m, nil
}

// Each calls fn for every remediation, ordered by received time then id, with its own
// attempt, streaming rows from one read snapshot. It stops at fn's first error and
// returns it.
func (s *Store) Each(ctx context.Context, fn func(Remediation) error) error {
	return s.inReadTx(ctx, func(tx *sql.Tx) error {
		return eachRemediation(ctx, tx, selectRemediation+" ORDER BY e.received_at, e.event_id, a.number", nil, fn)
	})
}

// Approved returns up to limit remediations in state approved whose attempt is not
// claimed at now (see Claim), the oldest received first, with their attempt.
func (s *Store) Approved(ctx context.Context, limit int, now time.Time) ([]Remediation, error) {
	var out []Remediation
	if limit <= 0 {
		return nil, nil
	}
	err := eachRemediation(ctx, s.r, s.q(selectRemediation+
		" WHERE e.state = ? AND a.claimed_until <= ? ORDER BY e.received_at, e.event_id, a.number LIMIT ?"),
		[]any{string(Approved), nanos(atOrNow(now)), limit},
		func(m Remediation) error {
			out = append(out, m)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("approved: %w", err)
	}
	return out, nil
}

// Claim takes the approved remediation id's attempt for owner until until, if no
// one holds it at now: only the holder of a claim submits. It reports whether the
// claim was taken and how many submissions of the attempt have failed so far.
func (s *Store) Claim(ctx context.Context, id, owner string, now, until time.Time) (bool, int, error) {
	var failures int
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, s.q(`UPDATE attempts SET claimed_by = ?, claimed_until = ?
			WHERE event_id = ? AND claimed_until <= ?
			AND EXISTS (SELECT 1 FROM events e WHERE e.event_id = attempts.event_id AND e.state = ?)
			RETURNING submit_failures`), owner, nanos(until), id, nanos(atOrNow(now)), string(Approved)).Scan(&failures)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("claim %s: %w", id, err)
	}
	return true, failures, nil
}

// Defer keeps id's attempt claimed by the claim's owner until retryAt, when any
// dispatcher may try again. With failed it records a failed submission: the count
// goes up and detail (why) joins the audit trail.
func (s *Store) Defer(ctx context.Context, id, owner string, retryAt time.Time, failed bool, detail string) error {
	inc := 0
	if failed {
		inc = 1
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE attempts SET claimed_until = ?, submit_failures = submit_failures + ?
			WHERE event_id = ? AND claimed_by = ?`), nanos(retryAt), inc, id, owner)
		if err != nil {
			return fmt.Errorf("defer %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 || !failed {
			return err
		}
		if s.backend == backendPostgres {
			// The event's row orders the writers of its audit rows.
			if _, err := tx.ExecContext(ctx, "SELECT 1 FROM events WHERE event_id = $1 FOR UPDATE", id); err != nil {
				return err
			}
		}
		return s.addAudit(ctx, tx, id, time.Now(), "dispatcher", "defer", Approved, Approved, detail)
	})
}

// Counts returns how many remediations are in each state (every state, zeros too).
func (s *Store) Counts(ctx context.Context) (map[State]int, error) {
	out := make(map[State]int, len(states))
	for _, st := range states {
		out[st] = 0
	}
	err := queryEach(ctx, s.r, "SELECT state, COUNT(*) FROM events GROUP BY state", nil, func(r *sql.Rows) error {
		var (
			st string
			n  int
		)
		err := r.Scan(&st, &n)
		out[State(st)] = n
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("counts: %w", err)
	}
	return out, nil
}

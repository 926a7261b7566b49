package ledger

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/autofix/autofix/failure"
)

const attemptCols = "chain_id, number, event_id, job_name, resources, params, submitted_at, outcome, finished_at, namespace, option_json, token"

// attemptRow checks a and returns its attempts row.
func attemptRow(a Attempt) ([]any, error) {
	switch {
	case a.ChainID == "":
		return nil, errors.New("attempt chain id: required")
	case a.Number < 1:
		return nil, fmt.Errorf("attempt number %d: want 1 or more", a.Number)
	case a.JobName == "":
		return nil, errors.New("attempt job name: required")
	}
	res, err := json.Marshal(a.Resources)
	if err != nil {
		return nil, fmt.Errorf("encode attempt resources: %w", err)
	}
	params, err := json.Marshal(a.Params)
	if err != nil {
		return nil, fmt.Errorf("encode attempt params: %w", err)
	}
	option := ""
	if a.Option != nil {
		b, err := json.Marshal(a.Option)
		if err != nil {
			return nil, fmt.Errorf("encode attempt option: %w", err)
		}
		option = string(b)
	}
	if a.Token == "" {
		var err error
		if a.Token, err = newToken(); err != nil {
			return nil, err
		}
	}
	return []any{a.ChainID, a.Number, a.EventID, a.JobName, string(res), string(params),
		nanos(a.SubmittedAt), a.Outcome, nanos(a.FinishedAt), a.Namespace, option, a.Token}, nil
}

// newToken returns a random attempt token: 128 bits, hex.
func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("attempt token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// outcomeRow is an outcome to append to a template's history.
type outcomeRow struct {
	key, eventID string
	at           time.Time
	o            failure.Outcome
}

// appendOutcomes appends rows to their templates' histories, in order. Each
// template's counter row in template_seq hands out dense sequence numbers; on
// PostgreSQL it is also the row lock that orders concurrent writers of one template.
// Counters are taken in key order, so writers cannot deadlock on them.
func (s *Store) appendOutcomes(ctx context.Context, tx *sql.Tx, rows []outcomeRow) ([]int64, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	counts := map[string]int64{}
	for _, r := range rows {
		counts[r.key]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	counters := make([][]any, len(keys))
	for i, k := range keys {
		counters[i] = []any{k, counts[k]}
	}
	next := map[string]int64{}
	err := s.insertRows(ctx, tx, "template_seq", "template_key, seq", counters,
		"ON CONFLICT (template_key) DO UPDATE SET seq = template_seq.seq + excluded.seq RETURNING template_key, seq",
		func(r *sql.Rows) error {
			var (
				k    string
				last int64
			)
			err := r.Scan(&k, &last)
			next[k] = last - counts[k] + 1
			return err
		})
	if err != nil {
		return nil, err
	}
	out := make([][]any, len(rows))
	seqs := make([]int64, len(rows))
	for i, r := range rows {
		b, err := json.Marshal(r.o)
		if err != nil {
			return nil, fmt.Errorf("encode outcome of %s: %w", r.eventID, err)
		}
		succeeded := 0
		if r.o.Succeeded {
			succeeded = 1
		}
		out[i] = []any{r.key, next[r.key], r.eventID, r.o.Attempt, succeeded, string(r.o.Category), nanos(r.at), string(b)}
		seqs[i] = next[r.key]
		next[r.key]++
	}
	return seqs, s.insertRows(ctx, tx, "outcomes",
		"template_key, seq, event_id, attempt, succeeded, category, recorded_at, outcome", out, "", nil)
}

// Transition moves remediation id from state from to state to, with an audit row
// (actor, detail, at), as one compare-and-set: a *TransitionError if the state
// machine forbids the move, an error wrapping ErrConflict if the remediation is not
// in from, ErrNotFound if there is none. Moving to Submitted sets its attempt's
// SubmittedAt to at; moving to a final state sets the attempt's Outcome and FinishedAt.
func (s *Store) Transition(ctx context.Context, id string, from, to State, actor, detail string, at time.Time) error {
	if err := checkMove(id, from, to); err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		return s.move(ctx, tx, id, from, to, actor, "transition", detail, at)
	})
}

// Approve moves remediation id from pending_review to approved and attaches the
// attempt to submit (an approver may have changed the option; ChainID defaults to the
// remediation's), with an audit row. The attempt is marked edited when it does not
// run the recommendation's chosen configuration (KindStats). An attempt whose number or job name is taken
// fails with an error wrapping ErrConflict.
func (s *Store) Approve(ctx context.Context, id string, a Attempt, actor, detail string, at time.Time) error {
	if a.Number < 1 || a.JobName == "" {
		return fmt.Errorf("approve %s: the attempt needs a number and a job name", id)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.move(ctx, tx, id, PendingReview, Approved, actor, "approve", detail, at); err != nil {
			return err
		}
		var (
			chain, namespace string
			rec              sql.NullString
		)
		if err := tx.QueryRowContext(ctx, s.q("SELECT chain_id, namespace, recommendation_json FROM events WHERE event_id = ?"),
			id).Scan(&chain, &namespace, &rec); err != nil {
			return err
		}
		if a.ChainID == "" {
			a.ChainID = chain
		}
		a.Namespace = namespace // the job runs where the failed one ran
		a.EventID = id
		row, err := attemptRow(a)
		if err != nil {
			return fmt.Errorf("approve %s: %w", id, err)
		}
		row = append(row, edited(rec.String, &a))
		res, err := tx.ExecContext(ctx, s.q("INSERT INTO attempts ("+attemptCols+", edited) VALUES "+placeholders(1, len(row))+
			" ON CONFLICT DO NOTHING"), row...)
		if err != nil {
			return fmt.Errorf("approve %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("approve %s: attempt %d of chain %s or job name %s is already recorded: %w",
				id, a.Number, a.ChainID, a.JobName, ErrConflict)
		}
		return nil
	})
}

// Reject moves remediation id from pending_review to rejected, with an audit row.
func (s *Store) Reject(ctx context.Context, id, actor, detail string, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		return s.move(ctx, tx, id, PendingReview, Rejected, actor, "reject", detail, at)
	})
}

// Finish records the outcome of a submitted attempt: the remediation moves from
// submitted to to (succeeded, failed or abandoned) with an audit row, its attempt
// gets its Outcome and FinishedAt, and, for succeeded and failed, outcome is
// appended to the history of the remediation's template (namespace/template; its
// Template defaults to the remediation's, its Attempt is the attempt's number and its
// Succeeded is set from to).
func (s *Store) Finish(ctx context.Context, id string, to State, outcome failure.Outcome, actor, detail string, at time.Time) error {
	if err := checkMove(id, Submitted, to); err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.move(ctx, tx, id, Submitted, to, actor, "finish", detail, at); err != nil {
			return err
		}
		if to == Abandoned {
			return nil
		}
		var (
			namespace, template string
			number              int
		)
		// A submitted remediation has its attempt (move checked it): the outcome is
		// that attempt's, numbered as the ledger numbered it (see AttemptOutcomes).
		if err := tx.QueryRowContext(ctx, s.q("SELECT e.namespace, e.template, a.number FROM events e"+
			" JOIN attempts a ON a.event_id = e.event_id WHERE e.event_id = ? ORDER BY a.number LIMIT 1"), id).
			Scan(&namespace, &template, &number); err != nil {
			return err
		}
		if outcome.Template == "" {
			outcome.Template = template
		}
		outcome.Attempt, outcome.Succeeded = number, to == Succeeded
		_, err := s.appendOutcomes(ctx, tx, []outcomeRow{{key: failure.TemplateKey(namespace, template), eventID: id, at: atOrNow(at), o: outcome}})
		return err
	})
}

// move is the compare-and-set of Transition, Approve, Reject and Finish.
func (s *Store) move(ctx context.Context, tx *sql.Tx, id string, from, to State, actor, action, detail string, at time.Time) error {
	if err := checkMove(id, from, to); err != nil {
		return err
	}
	at = atOrNow(at)
	res, err := tx.ExecContext(ctx, s.q("UPDATE events SET state = ?, updated_at = ? WHERE event_id = ? AND state = ?"),
		string(to), nanos(at), id, string(from))
	if err != nil {
		return fmt.Errorf("move %s to %s: %w", id, to, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		var cur string
		err := tx.QueryRowContext(ctx, s.q("SELECT state FROM events WHERE event_id = ?"), id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("remediation %s: %w", id, ErrNotFound)
		} else if err != nil {
			return err
		}
		return fmt.Errorf("remediation %s is %s, not %s: %w", id, cur, from, ErrConflict)
	}
	switch to {
	case Submitted:
		res, err := tx.ExecContext(ctx, s.q("UPDATE attempts SET submitted_at = ? WHERE event_id = ?"), nanos(at), id)
		if err != nil {
			return fmt.Errorf("submit %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("submit %s: no attempt recorded: %w", id, ErrNotFound)
		}
	case Succeeded, Failed, Abandoned, Rejected:
		outcome := string(to)
		if to == Rejected {
			outcome = string(Abandoned) // an approved attempt found not to be one autofix may act on
		}
		if _, err := tx.ExecContext(ctx, s.q("UPDATE attempts SET outcome = ?, finished_at = ? WHERE event_id = ?"),
			outcome, nanos(at), id); err != nil {
			return fmt.Errorf("finish %s: %w", id, err)
		}
	}
	return s.addAudit(ctx, tx, id, at, actor, action, from, to, detail)
}

// Note appends an audit row to remediation id without moving it: something that
// happened to it outside its life's transitions (its dead-letter copy could not be
// written, say). ErrNotFound if there is no such remediation.
func (s *Store) Note(ctx context.Context, id, actor, action, detail string, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		query := "SELECT state FROM events WHERE event_id = ?"
		if s.backend == backendPostgres {
			query += " FOR UPDATE" // the row that orders writers of the event's audit rows
		}
		var st string
		err := tx.QueryRowContext(ctx, s.q(query), id).Scan(&st)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("remediation %s: %w", id, ErrNotFound)
		} else if err != nil {
			return err
		}
		return s.addAudit(ctx, tx, id, atOrNow(at), actor, action, State(st), State(st), detail)
	})
}

// auditLock is the PostgreSQL advisory lock of the audit rows of no event.
const auditLock = 0x6175746f66697832

// addAudit appends an audit row for event id ("" for settings). The caller holds the
// row that orders writers of id (the event's, or the setting's).
func (s *Store) addAudit(ctx context.Context, tx *sql.Tx, id string, at time.Time, actor, action string, from, to State, detail string) error {
	if id == "" && s.backend == backendPostgres {
		// Rows of no event (settings, pipeline runs) have no row to lock: serialise
		// their writers so two cannot take the same seq. (SQLite has one writer.)
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(auditLock)); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, s.q("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit WHERE event_id = ?"), id).Scan(&seq); err != nil {
		return fmt.Errorf("audit %s: %w", id, err)
	}
	_, err := tx.ExecContext(ctx, s.q("INSERT INTO audit ("+auditCols+") VALUES "+placeholders(1, 8)),
		id, seq, nanos(at), actor, action, string(from), string(to), detail)
	if err != nil {
		return fmt.Errorf("audit %s: %w", id, err)
	}
	return nil
}

// SetPaused sets the kill switch replicas share, with an audit row (event id "",
// action "pause" or "resume", reason as detail).
func (s *Store) SetPaused(ctx context.Context, paused bool, actor, reason string, at time.Time) error {
	value, action := "0", "resume"
	if paused {
		value, action = "1", "pause"
	}
	at = atOrNow(at)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO settings (name, value, updated_at, actor, reason)
			VALUES ('paused', ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value,
			updated_at = excluded.updated_at, actor = excluded.actor, reason = excluded.reason`),
			value, nanos(at), actor, reason)
		if err != nil {
			return fmt.Errorf("set paused: %w", err)
		}
		return s.addAudit(ctx, tx, "", at, actor, action, "", "", reason)
	})
}

// Paused reports whether the kill switch is on.
func (s *Store) Paused(ctx context.Context) (bool, error) {
	p, err := s.PauseState(ctx)
	return p.Paused, err
}

// Pause is the kill switch and who set it last.
type Pause struct {
	Paused        bool
	Actor, Reason string
	At            time.Time
}

// PauseState reports the kill switch with who last set it, when and why.
func (s *Store) PauseState(ctx context.Context) (Pause, error) {
	var p Pause
	var value string
	var at int64
	err := s.r.QueryRowContext(ctx, "SELECT value, actor, reason, updated_at FROM settings WHERE name = 'paused'").
		Scan(&value, &p.Actor, &p.Reason, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("paused: %w", err)
	}
	p.Paused, p.At = value == "1", fromNanos(at)
	return p, nil
}

// Approvers returns, for each of the remediations ids a person approved, who did
// (the audit trail's approve rows; the policy's own approvals are not among them).
func (s *Store) Approvers(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	err := chunks(ids, func(c []string) error {
		return queryEach(ctx, s.r, s.q("SELECT event_id, actor FROM audit WHERE action = 'approve' AND event_id IN ("+list(len(c))+")"),
			anys(c), func(r *sql.Rows) error {
				var id, actor string
				err := r.Scan(&id, &actor)
				out[id] = actor
				return err
			})
	})
	if err != nil {
		return nil, fmt.Errorf("approvers: %w", err)
	}
	return out, nil
}

func atOrNow(at time.Time) time.Time {
	if at.IsZero() {
		return time.Now()
	}
	return at
}

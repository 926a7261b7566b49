package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/autofix/autofix/failure"
)

// MaxCorrectionNote is the longest note a correction may carry, in bytes.
const MaxCorrectionNote = 1000

// maxActor is the longest actor name a correction may carry, in bytes.
const maxActor = 256

// Correction is a person's correction of a remediation's classification: the
// category and retry decision the failure really had.
type Correction struct {
	Category  failure.Category
	Retryable bool
	// Actor is who corrected it, At when.
	Actor string
	At    time.Time
	// Note says why (optional, at most MaxCorrectionNote bytes).
	Note string
}

// CorrectionError is Correct's error for a correction that can never be recorded as
// it is. Field names the part at fault: category, actor or note.
type CorrectionError struct {
	Field, Problem string
}

func (e *CorrectionError) Error() string { return e.Field + ": " + e.Problem }

// checkCorrection refuses a category outside the taxonomy, a missing actor and a
// note that is too long or is not text.
func checkCorrection(category failure.Category, actor, note string) error {
	switch {
	case !category.Valid():
		return &CorrectionError{"category", fmt.Sprintf("%q is not a category of the taxonomy", category)}
	case actor == "":
		return &CorrectionError{"actor", "required"}
	case len(actor) > maxActor || !utf8.ValidString(actor) || hasControl(actor, false):
		return &CorrectionError{"actor", fmt.Sprintf("want a name of at most %d bytes without control characters", maxActor)}
	case len(note) > MaxCorrectionNote:
		return &CorrectionError{"note", fmt.Sprintf("%d bytes is over the %d-byte limit", len(note), MaxCorrectionNote)}
	case !utf8.ValidString(note) || hasControl(note, true):
		return &CorrectionError{"note", "want text: valid UTF-8 without control characters other than tabs and line breaks"}
	}
	return nil
}

// hasControl reports whether s holds a control character (other than tab, newline
// and carriage return when lines is set).
func hasControl(s string, lines bool) bool {
	for _, r := range s {
		if !unicode.IsControl(r) {
			continue
		}
		if !lines || (r != '\t' && r != '\n' && r != '\r') {
			return true
		}
	}
	return false
}

// Correct records actor's correction of remediation id's classification: the
// failure's category (one of the taxonomy's) and whether a retry can fix it, with an
// optional note, at at (now when zero), and an audit row (action "correct"). The
// latest correction of a remediation is the one in force; earlier ones stay in the
// ledger and in its audit trail. The remediation's own classification and state are
// left as they are.
//
// A correction that can never be recorded is a *CorrectionError naming the field.
// An id the ledger does not hold is ErrNotFound; a rejected message, which has no
// failure event to label, is an error wrapping ErrConflict.
func (s *Store) Correct(ctx context.Context, id string, category failure.Category, retryable bool, actor, note string, at time.Time) error {
	if err := checkCorrection(category, actor, note); err != nil {
		return err
	}
	at = atOrNow(at)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		query := "SELECT state, category, CASE WHEN event_json IS NULL THEN 1 ELSE 0 END FROM events WHERE event_id = ?"
		if s.backend == backendPostgres {
			query += " FOR UPDATE" // the row that orders writers of the event's corrections and audit rows
		}
		var (
			st, was string
			noEvent int
		)
		err := tx.QueryRowContext(ctx, s.q(query), id).Scan(&st, &was, &noEvent)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("remediation %s: %w", id, ErrNotFound)
		} else if err != nil {
			return fmt.Errorf("correct %s: %w", id, err)
		}
		if noEvent == 1 {
			return fmt.Errorf("remediation %s is a rejected message, with no failure event to correct: %w", id, ErrConflict)
		}
		var seq int64
		if err := tx.QueryRowContext(ctx, s.q("SELECT COALESCE(MAX(seq), 0) + 1 FROM corrections WHERE event_id = ?"), id).Scan(&seq); err != nil {
			return fmt.Errorf("correct %s: %w", id, err)
		}
		_, err = tx.ExecContext(ctx, s.q("INSERT INTO corrections (event_id, seq, category, retryable, actor, note, created_at) VALUES "+
			placeholders(1, 7)), id, seq, string(category), boolInt(retryable), actor, note, nanos(at))
		if err != nil {
			return fmt.Errorf("correct %s: %w", id, err)
		}
		retry := "not retryable"
		if retryable {
			retry = "retryable"
		}
		detail := fmt.Sprintf("category %s, %s (classified %s)", category, retry, was)
		if note != "" {
			detail += ": " + note
		}
		return s.addAudit(ctx, tx, id, at, actor, "correct", State(st), State(st), detail)
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// latestCorrection is remediation id's correction in force, nil if it has none.
func (s *Store) latestCorrection(ctx context.Context, db querier, id string) (*Correction, error) {
	var (
		c         Correction
		cat       string
		retryable int
		at        int64
	)
	err := db.QueryRowContext(ctx, s.q("SELECT category, retryable, actor, note, created_at FROM corrections WHERE event_id = ?"+
		" ORDER BY seq DESC LIMIT 1"), id).Scan(&cat, &retryable, &c.Actor, &c.Note, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("correction of %s: %w", id, err)
	}
	c.Category, c.Retryable, c.At = failure.Category(cat), retryable == 1, fromNanos(at)
	return &c, nil
}

// CorrectedEvent is a remediation's failure event with the correction in force: a
// labelled example.
type CorrectedEvent struct {
	EventID string
	// Event is the failure event as the ledger recorded it; nil when the stored event
	// cannot be decoded (Unreadable says why).
	Event *failure.Event
	// Classified is the category autofix gave the failure.
	Classified failure.Category
	Correction Correction
	Unreadable string
}

// EachCorrection calls fn for every remediation whose correction in force (its
// latest) was made at or after since (every one when since is zero), oldest
// correction first, reading one snapshot of the ledger. It stops at fn's first error
// and returns it.
func (s *Store) EachCorrection(ctx context.Context, since time.Time, fn func(CorrectedEvent) error) error {
	query := `SELECT c.event_id, c.category, c.retryable, c.actor, c.note, c.created_at, e.category, e.event_json
		FROM corrections c JOIN events e ON e.event_id = c.event_id
		WHERE c.seq = (SELECT MAX(l.seq) FROM corrections l WHERE l.event_id = c.event_id) AND c.created_at >= ?
		ORDER BY c.created_at, c.event_id`
	return s.inReadTx(ctx, func(tx *sql.Tx) error {
		return queryEach(ctx, tx, s.q(query), []any{nanos(since)}, func(r *sql.Rows) error {
			var (
				ce             CorrectedEvent
				cat, was       string
				retryable      int
				at             int64
				eventJSON      sql.NullString
				correctionNote string
			)
			if err := r.Scan(&ce.EventID, &cat, &retryable, &ce.Correction.Actor, &correctionNote, &at, &was, &eventJSON); err != nil {
				return fmt.Errorf("corrections: %w", err)
			}
			ce.Correction.Category, ce.Correction.Retryable = failure.Category(cat), retryable == 1
			ce.Correction.Note, ce.Correction.At, ce.Classified = correctionNote, fromNanos(at), failure.Category(was)
			if !eventJSON.Valid {
				ce.Unreadable = "no stored event"
			} else {
				ce.Event = new(failure.Event)
				if err := json.Unmarshal([]byte(eventJSON.String), ce.Event); err != nil {
					ce.Event, ce.Unreadable = nil, fmt.Sprintf("the stored event: %v", err)
				}
			}
			return fn(ce)
		})
	})
}

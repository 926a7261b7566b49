package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// DeliveryKind is what a webhook message says of a review.
type DeliveryKind string

// The kinds of webhook messages.
const (
	// DeliveryPending: a fix entered pending_review.
	DeliveryPending DeliveryKind = "pending"
	// DeliveryEscalated: a fix has waited for review longer than the webhook's
	// escalation time.
	DeliveryEscalated DeliveryKind = "escalated"
	// DeliveryEnded: a fix that was announced left pending_review (approved,
	// rejected, expired).
	DeliveryEnded DeliveryKind = "ended"
)

// Valid reports whether k is one of the kinds.
func (k DeliveryKind) Valid() bool {
	return k == DeliveryPending || k == DeliveryEscalated || k == DeliveryEnded
}

// DeliveryStatus is where a webhook message is.
type DeliveryStatus string

// The statuses of a webhook message.
const (
	// DeliveryQueued: not delivered yet; the next attempt is at NextAt.
	DeliveryQueued DeliveryStatus = "queued"
	// DeliveryDelivered: the receiver took it (a 2xx).
	DeliveryDelivered DeliveryStatus = "delivered"
	// DeliveryFailed: given up, after the last attempt or a refusal (a 4xx).
	DeliveryFailed DeliveryStatus = "failed"
	// DeliverySuperseded: not sent any more, for the review ended before it was
	// delivered: the ended message says all there is to say.
	DeliverySuperseded DeliveryStatus = "superseded"
	// DeliverySkipped: recorded, never sent: the webhook does not take messages of
	// its kind. A skipped pending message is what tells that the webhook knew of the
	// review, whose end it takes; a skipped ended one, that the review ended while
	// the webhook did not take ends (it is not told of it if it takes them later).
	DeliverySkipped DeliveryStatus = "skipped"
)

// Bounds on what a delivery row holds, in bytes.
const (
	MaxDeliveryPayload = 64 << 10
	maxWebhookName     = 63
	maxDeliveryError   = 500
)

// Delivery is one message to one webhook about one remediation, and its record.
type Delivery struct {
	// Webhook is the webhook's name in the configuration.
	Webhook string
	EventID string
	Kind    DeliveryKind
	// Payload is the body, as built when the message was queued.
	Payload []byte
	Status  DeliveryStatus
	// Attempts counts the posts made; NextAt is when the next one is due (while
	// queued).
	Attempts int
	NextAt   time.Time
	// HTTPStatus is the last answer's status, 0 without one; LastError says why
	// the last attempt failed, empty after a success.
	HTTPStatus int
	LastError  string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// DeliveryResult is the result of one attempt to deliver a message.
type DeliveryResult struct {
	At time.Time
	// Status is DeliveryDelivered, DeliveryFailed (given up) or DeliveryQueued
	// (to be tried again at NextAt).
	Status     DeliveryStatus
	NextAt     time.Time
	HTTPStatus int
	Err        string
}

// checkDelivery refuses what can never be a delivery row.
func checkDelivery(webhook, eventID string, kind DeliveryKind) error {
	switch {
	case webhook == "" || len(webhook) > maxWebhookName:
		return fmt.Errorf("webhook: want a name of 1 to %d bytes", maxWebhookName)
	case eventID == "":
		return errors.New("event id: required")
	case !kind.Valid():
		return fmt.Errorf("kind: %q, want pending, escalated or ended", kind)
	}
	return nil
}

const deliveryCols = "webhook, event_id, kind, payload, status, attempts, next_at, http_status, last_error, created_at, updated_at"

// EnqueueDelivery queues the message d (Webhook, EventID, Kind and Payload; queued at
// CreatedAt, now when zero; recorded as skipped instead when d.Status is
// DeliverySkipped) unless that webhook already has that kind of message about that
// remediation, and reports whether it queued it. Queuing an ended message
// supersedes the webhook's queued messages about the remediation, and a pending or
// escalated message about a remediation no longer in pending_review is recorded
// superseded, never sent: its review ended (another replica may have queued the end
// already). A remediation the ledger does not hold is ErrNotFound.
func (s *Store) EnqueueDelivery(ctx context.Context, d Delivery) (bool, error) {
	if err := checkDelivery(d.Webhook, d.EventID, d.Kind); err != nil {
		return false, err
	}
	if len(d.Payload) == 0 || len(d.Payload) > MaxDeliveryPayload || !utf8.Valid(d.Payload) {
		return false, fmt.Errorf("payload: want 1 to %d bytes of UTF-8", MaxDeliveryPayload)
	}
	status := DeliveryQueued
	if d.Status == DeliverySkipped {
		status = DeliverySkipped
	}
	at := nanos(atOrNow(d.CreatedAt))
	queued := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		query := "SELECT state FROM events WHERE event_id = ?"
		if s.backend == backendPostgres {
			query += " FOR UPDATE" // a decision that ends the review waits for this message, or comes first
		}
		var state string
		err := tx.QueryRowContext(ctx, s.q(query), d.EventID).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("remediation %s: %w", d.EventID, ErrNotFound)
		} else if err != nil {
			return err
		}
		if d.Kind != DeliveryEnded && State(state) != PendingReview {
			status = DeliverySuperseded
		}
		res, err := tx.ExecContext(ctx, s.q("INSERT INTO deliveries ("+deliveryCols+") VALUES "+placeholders(1, 11)+
			" ON CONFLICT (webhook, event_id, kind) DO NOTHING"),
			d.Webhook, d.EventID, string(d.Kind), string(d.Payload), string(status), 0, at, 0, "", at, at)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		queued = true
		if d.Kind != DeliveryEnded {
			return nil
		}
		_, err = tx.ExecContext(ctx, s.q("UPDATE deliveries SET status = ?, updated_at = ? WHERE webhook = ? AND event_id = ? AND kind <> ? AND status = ?"),
			string(DeliverySuperseded), at, d.Webhook, d.EventID, string(DeliveryEnded), string(DeliveryQueued))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q("UPDATE deliveries SET open = 0 WHERE webhook = ? AND event_id = ?"), d.Webhook, d.EventID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("queue the %s message of %s to webhook %s: %w", d.Kind, d.EventID, d.Webhook, err)
	}
	return queued, nil
}

// kindOrder orders the messages about a review queued at one time as they happen:
// pending, escalated, ended (a review first seen after its escalation time gets
// its pending and escalated messages in one round).
const kindOrder = "CASE kind WHEN 'pending' THEN 0 WHEN 'escalated' THEN 1 ELSE 2 END"

// DueDeliveries returns up to limit queued messages to webhook whose next attempt is
// due at now, the earliest queued first.
func (s *Store) DueDeliveries(ctx context.Context, webhook string, now time.Time, limit int) ([]Delivery, error) {
	return s.deliveries(ctx, "webhook = ? AND status = ? AND next_at <= ? ORDER BY created_at, event_id, "+kindOrder+" LIMIT ?",
		webhook, string(DeliveryQueued), nanos(now), limit)
}

// Deliveries returns the webhook messages about remediation id, oldest first.
func (s *Store) Deliveries(ctx context.Context, id string) ([]Delivery, error) {
	return s.deliveries(ctx, "event_id = ? ORDER BY created_at, webhook, "+kindOrder, id)
}

func (s *Store) deliveries(ctx context.Context, where string, args ...any) ([]Delivery, error) {
	var out []Delivery
	err := queryEach(ctx, s.r, s.q("SELECT "+deliveryCols+" FROM deliveries WHERE "+where), args, func(r *sql.Rows) error {
		var (
			d                      Delivery
			kind, status, payload  string
			next, created, updated int64
		)
		if err := r.Scan(&d.Webhook, &d.EventID, &kind, &payload, &status, &d.Attempts, &next, &d.HTTPStatus, &d.LastError,
			&created, &updated); err != nil {
			return err
		}
		d.Kind, d.Status, d.Payload = DeliveryKind(kind), DeliveryStatus(status), []byte(payload)
		d.NextAt, d.CreatedAt, d.UpdatedAt = fromNanos(next), fromNanos(created), fromNanos(updated)
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webhook deliveries: %w", err)
	}
	return out, nil
}

// RecordDelivery records an attempt to deliver webhook's kind message about
// remediation id. A message superseded while the attempt was under way stays
// superseded unless the attempt delivered it. A message that is not queued or
// superseded (delivered or failed already: another replica's attempt) is left as it is,
// and so is one the ledger no longer holds.
func (s *Store) RecordDelivery(ctx context.Context, webhook, id string, kind DeliveryKind, r DeliveryResult) error {
	if err := checkDelivery(webhook, id, kind); err != nil {
		return err
	}
	if !slices.Contains([]DeliveryStatus{DeliveryQueued, DeliveryDelivered, DeliveryFailed}, r.Status) {
		return fmt.Errorf("status: %q, want queued, delivered or failed", r.Status)
	}
	at := nanos(atOrNow(r.At))
	status := "?" // delivered, even if superseded meanwhile
	if r.Status != DeliveryDelivered {
		status = "CASE WHEN status = '" + string(DeliverySuperseded) + "' THEN status ELSE ? END"
	}
	_, err := s.w.ExecContext(ctx, s.q(`UPDATE deliveries SET attempts = attempts + 1, http_status = ?, last_error = ?, next_at = ?,
		updated_at = ?, status = `+status+` WHERE webhook = ? AND event_id = ? AND kind = ? AND status IN (?, ?)`),
		r.HTTPStatus, text(clipError(r.Err)), nanos(r.NextAt), at, string(r.Status),
		webhook, id, string(kind), string(DeliveryQueued), string(DeliverySuperseded))
	if err != nil {
		return fmt.Errorf("record the %s message of %s to webhook %s: %w", kind, id, webhook, err)
	}
	return nil
}

// clipError cuts an error message to maxDeliveryError bytes at a character's
// boundary.
func clipError(s string) string { return clip(s, maxDeliveryError) }

// clip cuts s to at most n bytes at a character's boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// endedReviewsQuery is EndedReviews' query.
const endedReviewsQuery = `SELECT d.event_id FROM deliveries d JOIN events e ON e.event_id = d.event_id
	WHERE d.webhook = ? AND d.open = 1 AND d.kind = ? AND e.state <> ?
	ORDER BY e.updated_at, d.event_id LIMIT ?`

// EndedReviews returns up to limit remediations that webhook was told are pending
// (a pending message, whatever its status) and that have left pending_review since,
// without an ended message yet: the reviews whose end it is to be told. It reads the
// open rows only (those without an ended message), so its cost is that of the
// reviews under way, not of the ledger's history.
func (s *Store) EndedReviews(ctx context.Context, webhook string, limit int) ([]string, error) {
	var ids []string
	err := queryEach(ctx, s.r, s.q(endedReviewsQuery),
		[]any{webhook, string(DeliveryPending), string(PendingReview), limit}, func(r *sql.Rows) error {
			var id string
			err := r.Scan(&id)
			ids = append(ids, id)
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("ended reviews of webhook %s: %w", webhook, err)
	}
	return ids, nil
}

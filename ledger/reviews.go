package ledger

import (
	"context"
	"fmt"
)

// PendingReviews returns up to limit remediations waiting for review
// (pending_review), the longest waiting first: oldest received, then by id. Those
// are the ones a notifier must not drop when more wait than it may send, for they
// are the ones it escalates. A limit of 0 or less returns none.
func (s *Store) PendingReviews(ctx context.Context, limit int) ([]Remediation, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []Remediation
	err := eachRemediation(ctx, s.r, s.q(selectRemediation+
		" WHERE e.state = ? ORDER BY e.received_at, e.event_id, a.number LIMIT ?"),
		[]any{string(PendingReview), limit},
		func(m Remediation) error {
			out = append(out, m)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("pending reviews: %w", err)
	}
	return out, nil
}

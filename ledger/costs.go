package ledger

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/autofix/autofix/failure"
)

// AttemptOutcomes returns, for each of the remediations ids whose own attempt ended
// (succeeded or failed) with its outcome recorded by Finish, that outcome: the run
// autofix submitted, as the caller of Finish measured it — its duration, and its cost
// and what that leaves out (Outcome.Cost, Outcome.Unpriced). Remediations without
// one (no attempt, one that has not ended, was abandoned, or ended without an
// outcome) are not in the map, nor are outcomes that no longer decode.
//
// A remediation has up to two outcomes in its template's history: the failed run
// its event reported (Record; what its event says it cost is the publisher's claim)
// and its attempt's (Finish). The attempt's is the one numbered as the attempt is: a
// chain numbers a remediation's attempt past the failed run it answers.
func (s *Store) AttemptOutcomes(ctx context.Context, ids []string) (map[string]failure.Outcome, error) {
	out := map[string]failure.Outcome{}
	err := chunks(ids, func(c []string) error {
		return queryEach(ctx, s.r, s.q("SELECT o.event_id, o.outcome FROM outcomes o"+
			" JOIN attempts a ON a.event_id = o.event_id AND a.number = o.attempt"+
			" WHERE o.event_id IN ("+list(len(c))+")"),
			anys(c), func(r *sql.Rows) error {
				var id, data string
				if err := r.Scan(&id, &data); err != nil {
					return err
				}
				if o, ok := decodeOutcome(data); ok {
					out[id] = o
				}
				return nil
			})
	})
	if err != nil {
		return nil, fmt.Errorf("attempt outcomes: %w", err)
	}
	return out, nil
}

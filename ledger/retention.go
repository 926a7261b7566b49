package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// pruneBatch is how many remediations one pruning transaction deletes, so that no
// transaction holds the ledger for long.
const pruneBatch = 2000

// Prune deletes what the ledger holds of remediations that ended (rejected,
// succeeded, failed or abandoned) before before — by their last change, so that a
// fix that waited long for review keeps its trail for the whole retention after it
// ended: the event, its attempts, its audit trail, its corrections, its webhook
// messages, its shadow predictions and its outcome in its template's history. A
// remediation that has not ended is kept, however old: someone may still act on
// it; so is one corrected since before, a labelled example someone just made.
// Pipeline runs that ended before before go too. It returns how many remediations
// it deleted.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		var ids []string
		err := queryEach(ctx, s.r, s.q(`SELECT event_id FROM events e WHERE updated_at < ? AND state IN (?, ?, ?, ?)
			AND NOT EXISTS (SELECT 1 FROM corrections c WHERE c.event_id = e.event_id AND c.created_at >= ?) LIMIT ?`),
			[]any{nanos(before), string(Rejected), string(Succeeded), string(Failed), string(Abandoned), nanos(before), pruneBatch},
			func(r *sql.Rows) error {
				var id string
				err := r.Scan(&id)
				ids = append(ids, id)
				return err
			})
		if err != nil {
			return total, fmt.Errorf("prune: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			return chunks(ids, func(c []string) error {
				in := "(" + list(len(c)) + ")"
				for _, table := range []string{"outcomes", "audit", "attempts", "corrections", "deliveries", "shadow_predictions", "events"} {
					if _, err := tx.ExecContext(ctx, s.q("DELETE FROM "+table+" WHERE event_id IN "+in), anys(c)...); err != nil {
						return fmt.Errorf("prune %s: %w", table, err)
					}
				}
				return nil
			})
		})
		if err != nil {
			return total, err
		}
		total += len(ids)
		if len(ids) < pruneBatch {
			break
		}
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q("DELETE FROM pipeline_runs WHERE phase <> 'running' AND updated_at < ?"), nanos(before))
		if err != nil {
			return err
		}
		// Settings' audit rows (event id "") are the kill switch's history: they go with age too.
		_, err = tx.ExecContext(ctx, s.q("DELETE FROM audit WHERE event_id = '' AND created_at < ?"), nanos(before))
		return err
	})
	if err != nil {
		return total, fmt.Errorf("prune: %w", err)
	}
	return total, nil
}

package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// jobSpecTTL is how long a failed Job's spec is kept.
const jobSpecTTL = 7 * 24 * time.Hour

// KeepJobSpec stores the spec of the failed Job uid, and drops specs older than a
// week.
func (s *Store) KeepJobSpec(ctx context.Context, uid, namespace, name string, spec []byte, at time.Time) error {
	at = atOrNow(at)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO job_specs (uid, namespace, name, spec, recorded_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (uid) DO UPDATE SET spec = excluded.spec, recorded_at = excluded.recorded_at`),
			uid, namespace, name, string(spec), nanos(at)); err != nil {
			return fmt.Errorf("keep job spec: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.q("DELETE FROM job_specs WHERE recorded_at < ?"), nanos(at.Add(-jobSpecTTL))); err != nil {
			return fmt.Errorf("keep job spec: %w", err)
		}
		return nil
	})
}

// JobSpec returns the kept spec of the failed Job uid (nil if none, or older than a
// week at now).
func (s *Store) JobSpec(ctx context.Context, uid string, now time.Time) ([]byte, error) {
	var spec string
	err := s.r.QueryRowContext(ctx, s.q("SELECT spec FROM job_specs WHERE uid = ? AND recorded_at >= ?"), uid,
		nanos(atOrNow(now).Add(-jobSpecTTL))).Scan(&spec)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("job spec: %w", err)
	}
	return []byte(spec), nil
}

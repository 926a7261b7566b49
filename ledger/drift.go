package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/autofix/autofix/failure"
)

// PredictedOutcome is an attempt that ended, with the chance of success its option
// was chosen with.
type PredictedOutcome struct {
	EventID    string
	PSuccess   float64
	Succeeded  bool
	FinishedAt time.Time
}

// RecentPredictedOutcomes returns up to limit attempts that succeeded or failed, the
// latest to finish first, each with the P(success) of the option it ran. Attempts
// without a recorded option, or whose option's P(success) is not in [0, 1], are
// left out: nothing was predicted of them.
func (s *Store) RecentPredictedOutcomes(ctx context.Context, limit int) ([]PredictedOutcome, error) {
	var out []PredictedOutcome
	err := queryEach(ctx, s.r, s.q(`SELECT event_id, option_json, outcome, finished_at FROM attempts
		WHERE outcome IN (?, ?) AND option_json <> '' ORDER BY finished_at DESC, event_id LIMIT ?`),
		[]any{string(Succeeded), string(Failed), limit}, func(r *sql.Rows) error {
			var (
				p            PredictedOutcome
				opt, outcome string
				finished     int64
			)
			if err := r.Scan(&p.EventID, &opt, &outcome, &finished); err != nil {
				return err
			}
			var o failure.Option
			if err := json.Unmarshal([]byte(opt), &o); err != nil {
				return nil //nolint:nilerr // an option that does not decode predicted nothing: left out
			}
			if math.IsNaN(o.PSuccess) || o.PSuccess < 0 || o.PSuccess > 1 {
				return nil
			}
			p.PSuccess, p.Succeeded, p.FinishedAt = o.PSuccess, outcome == string(Succeeded), fromNanos(finished)
			out = append(out, p)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("recent outcomes: %w", err)
	}
	return out, nil
}

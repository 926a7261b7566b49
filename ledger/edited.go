package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/autofix/autofix/failure"
)

// edited is the attempts.edited of attempt a approved on the recommendation recJSON
// (its JSON; "" if none): 1 when a does not run the recommendation's chosen
// configuration — an approver edited it, picked another option, or there was no
// option to approve — 0 when it does. An attempt recorded without its whole option
// (before attempts kept it) is compared on its resources and parameters only.
func edited(recJSON string, a *Attempt) int {
	// Only the options and the choice: the rest of the recommendation (its
	// classification, say) is not what the attempt is compared with.
	var rec struct {
		Retry   bool             `json:"retry"`
		Options []failure.Option `json:"options"`
		Chosen  int              `json:"chosen"`
	}
	if recJSON == "" || json.Unmarshal([]byte(recJSON), &rec) != nil {
		return 1
	}
	chosen, ok := failure.Recommendation{Retry: rec.Retry, Options: rec.Options, Chosen: rec.Chosen}.ChosenOption()
	if !ok {
		return 1
	}
	ran := a.Option
	if ran == nil {
		ran = &failure.Option{Resources: a.Resources, Params: a.Params, AvoidNodes: chosen.AvoidNodes,
			DeadlineSeconds: chosen.DeadlineSeconds, DelaySeconds: chosen.DelaySeconds}
	}
	if chosen.SameConfiguration(ran) {
		return 0
	}
	return 1
}

// fillBatch is how many attempts fillEdited works out per transaction.
const fillBatch = 500

// fillEdited works out attempts.edited for the attempts approved before the column
// (migration 0012 marks them -1), from their recommendation and their option, in
// batches. Replicas opening at once do the same work and write the same values.
func (s *Store) fillEdited(ctx context.Context) error {
	type row struct {
		event string
		a     Attempt
		rec   string
	}
	for {
		var rows []row
		err := queryEach(ctx, s.w, s.q(`SELECT a.event_id, a.resources, a.params, a.option_json, COALESCE(e.recommendation_json, '')
			FROM attempts a JOIN events e ON e.event_id = a.event_id WHERE a.edited = -1 LIMIT ?`), []any{fillBatch},
			func(r *sql.Rows) error {
				var (
					x                       row
					res, params, optionJSON string
				)
				if err := r.Scan(&x.event, &res, &params, &optionJSON, &x.rec); err != nil {
					return err
				}
				// What does not decode is compared as empty: it then differs from any
				// chosen option, and counts as edited, never as an approval.
				_ = json.Unmarshal([]byte(res), &x.a.Resources)
				_ = json.Unmarshal([]byte(params), &x.a.Params)
				if optionJSON != "" {
					x.a.Option = new(failure.Option)
					if json.Unmarshal([]byte(optionJSON), x.a.Option) != nil {
						x.a.Option = &failure.Option{}
					}
				}
				rows = append(rows, x)
				return nil
			})
		if err != nil {
			return fmt.Errorf("work out edited attempts: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			for _, x := range rows {
				if _, err := tx.ExecContext(ctx, s.q("UPDATE attempts SET edited = ? WHERE event_id = ? AND edited = -1"),
					edited(x.rec, &x.a), x.event); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("work out edited attempts: %w", err)
		}
		if len(rows) < fillBatch {
			return nil
		}
	}
}

package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/autofix/autofix/failure"
)

// MachineActors are the actors autofix's own parts write audit rows as: the
// ledger's, the engine's (the policy, the intake, the dispatcher, the verifier),
// the watcher's and the autonomy's. A decision by any other actor is a person's.
var MachineActors = []string{actorAutofix, "policy", "intake", "dispatcher", "verifier", "watcher", "autonomy"}

// AttemptCounts are how a set of attempts ended.
type AttemptCounts struct {
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

// Total is how many ended succeeded or failed.
func (a AttemptCounts) Total() int { return a.Succeeded + a.Failed }

// KindStats are a kind of fix's figures over a window: how people decided its
// fixes, and how its attempts ended.
type KindStats struct {
	Kind Kind `json:"kind"`
	// Approved and Rejected count the remediations a person decided (from
	// pending_review; MachineActors never count): Approved those approved as
	// recommended, to run the recommendation's chosen configuration. Edited counts
	// those a person approved only after changing it (editing the option or
	// picking another): a decision against the recommendation as it stood, so not
	// an approval of it.
	Approved int `json:"approved"`
	Edited   int `json:"edited"`
	Rejected int `json:"rejected"`
	// Reviewed are how the attempts a person approved as recommended ended;
	// Automatic how the attempts applied without a person ended. Edited attempts
	// are in neither (they did not run what autofix recommends), nor are abandoned
	// ones and those still running.
	Reviewed  AttemptCounts `json:"reviewed"`
	Automatic AttemptCounts `json:"automatic"`
}

// Reviews is how many of the kind's fixes a person decided: approved as
// recommended, edited or rejected.
func (k *KindStats) Reviews() int { return k.Approved + k.Edited + k.Rejected }

// Outcomes are how all the kind's attempts that ran its recommendation ended,
// reviewed and automatic.
func (k *KindStats) Outcomes() AttemptCounts {
	return AttemptCounts{k.Reviewed.Succeeded + k.Automatic.Succeeded, k.Reviewed.Failed + k.Automatic.Failed}
}

// KindFilter selects the remediations KindStats counts.
type KindFilter struct {
	// Since and Until bound when they were received: [Since, Until); a zero Until
	// is no bound.
	Since, Until time.Time
	// Kind, if set, counts that kind only.
	Kind *Kind
	// Limit is the most kinds returned (1-10000, default 1000), those with the most
	// decisions by a person first.
	Limit int
}

// personDecided is the join condition of a person's approve or reject row of event e.
func personDecided(alias string) string {
	return alias + ".event_id = e.event_id AND " + alias + ".from_state = '" + string(PendingReview) + "' AND " +
		alias + ".action IN ('approve', 'reject') AND " + alias + ".actor NOT IN (" + list(len(MachineActors)) + ")"
}

// KindStats returns the figures of each kind of fix received in the filter's
// window that a person decided or whose attempt ended, by kind. It reads the
// window's events through their received_at index, each one's audit rows and
// attempt through their event_id indexes.
func (s *Store) KindStats(ctx context.Context, f KindFilter) ([]KindStats, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	limit = min(limit, 10000)
	args := anys(MachineActors)
	where := "e.received_at >= ? AND e.category <> ''"
	args = append(args, nanos(f.Since))
	if !f.Until.IsZero() {
		where += " AND e.received_at < ?"
		args = append(args, nanos(f.Until))
	}
	if f.Kind != nil {
		where += " AND e.category = ? AND e.template_key = ? AND e.kind = ? AND e.workload = ?"
		args = append(args, string(f.Kind.Category), text(f.Kind.Template), string(f.Kind.JobKind), normWorkload(f.Kind.Workload))
	}
	args = append(args, limit)
	query := `SELECT e.category, e.template_key, e.kind, e.workload,
		SUM(CASE WHEN d.action = 'approve' AND a.edited = 0 THEN 1 ELSE 0 END),
		SUM(CASE WHEN d.action = 'approve' AND (a.edited IS NULL OR a.edited <> 0) THEN 1 ELSE 0 END),
		SUM(CASE WHEN d.action = 'reject' THEN 1 ELSE 0 END),
		SUM(CASE WHEN d.action = 'approve' AND a.edited = 0 AND a.outcome = 'succeeded' THEN 1 ELSE 0 END),
		SUM(CASE WHEN d.action = 'approve' AND a.edited = 0 AND a.outcome = 'failed' THEN 1 ELSE 0 END),
		SUM(CASE WHEN d.action IS NULL AND a.outcome = 'succeeded' THEN 1 ELSE 0 END),
		SUM(CASE WHEN d.action IS NULL AND a.outcome = 'failed' THEN 1 ELSE 0 END)
		FROM events e
		LEFT JOIN audit d ON ` + personDecided("d") + `
		LEFT JOIN attempts a ON a.event_id = e.event_id
		WHERE ` + where + `
		GROUP BY e.category, e.template_key, e.kind, e.workload
		HAVING COUNT(d.action) > 0 OR SUM(CASE WHEN a.outcome IN ('succeeded', 'failed') THEN 1 ELSE 0 END) > 0
		ORDER BY COUNT(d.action) DESC, e.category, e.template_key, e.kind, e.workload
		LIMIT ?`
	var out []KindStats
	err := queryEach(ctx, s.r, s.q(query), args, func(r *sql.Rows) error {
		var (
			k             KindStats
			category, job string
		)
		if err := r.Scan(&category, &k.Kind.Template, &job, &k.Kind.Workload, &k.Approved, &k.Edited, &k.Rejected, &k.Reviewed.Succeeded,
			&k.Reviewed.Failed, &k.Automatic.Succeeded, &k.Automatic.Failed); err != nil {
			return err
		}
		k.Kind.Category, k.Kind.JobKind = failure.Category(category), failure.JobKind(job)
		out = append(out, k)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kind stats: %w", err)
	}
	return out, nil
}

// GrantOutcomes returns how the latest limit attempts (1-1000) of the fixes grant
// (an AutonomyChange's Seq) applied on its own ended, of those that ended
// succeeded or failed: true for a success, newest end first. The fixes the rules
// applied anyway, of the same kind, are not among them (Entry.Grant). It reads the
// grant's fixes through the partial index events_autonomy_grant (the query
// repeats its condition, without which SQLite cannot use it), each one's attempt by
// event id.
func (s *Store) GrantOutcomes(ctx context.Context, grant int64, limit int) ([]bool, error) {
	if grant < 1 {
		return nil, fmt.Errorf("outcomes of grant %d: want a grant's seq", grant)
	}
	limit = min(max(limit, 1), 1000)
	var out []bool
	err := queryEach(ctx, s.r, s.q(`SELECT a.outcome FROM events e JOIN attempts a ON a.event_id = e.event_id
		WHERE e.autonomy_grant = ? AND e.autonomy_grant <> 0 AND a.outcome IN ('succeeded', 'failed')
		ORDER BY a.finished_at DESC, a.event_id DESC LIMIT ?`), []any{grant, limit}, func(r *sql.Rows) error {
		var outcome string
		err := r.Scan(&outcome)
		out = append(out, outcome == string(Succeeded))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("outcomes of grant %d: %w", grant, err)
	}
	return out, nil
}

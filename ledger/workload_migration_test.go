package ledger

import (
	"context"
	"testing"
	"time"
)

// TestWorkloadMigrationFillsPastFailures: a ledger that recorded the failures of
// JobSets and RayJobs before migration 0013 knows their workload from the event's
// id (their watchers' k8s-jobset-<uid>, k8s-rayjob-<uid>): the migration names it,
// so that their approvals and outcomes do not count as a batch Job's towards a
// grant, nor go missing from their own kind of fix.
func TestWorkloadMigrationFillsPastFailures(t *testing.T) {
	forEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		s := openTest(t, dsn)
		ctx := context.Background()
		a := entryOpt{at: t0.Add(time.Hour)}
		for _, id := range []string{"k8s-jobset-u1", "k8s-rayjob-u2", "k8s-workflow-u3", "k8s-job-u4"} {
			live(t, s, life{id: id, o: a, review: true, decider: "alice", end: Succeeded})
		}
		// The ledger as it was before migration 0013.
		for _, q := range []string{"DROP INDEX autonomy_kind", "ALTER TABLE autonomy DROP COLUMN workload", "ALTER TABLE events DROP COLUMN workload",
			"CREATE INDEX autonomy_kind ON autonomy (category, template_key, job_kind, seq)", "DELETE FROM schema_migrations WHERE version = 13"} {
			if _, err := s.w.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		s2 := openTest(t, dsn)
		for id, want := range map[string]string{"k8s-jobset-u1": "JobSet", "k8s-rayjob-u2": "RayJob", "k8s-workflow-u3": "Workflow", "k8s-job-u4": ""} {
			var got string
			if err := s2.r.QueryRowContext(ctx, s2.q("SELECT workload FROM events WHERE event_id = ?"), id).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("workload of %s after migration 0013 = %q, want %q", id, got, want)
			}
		}
	})
}

package recommender_test

import (
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
)

// TestWithoutPeaksTheLimitsTriedSizeTheRetry: on a cluster without metrics, an OOM
// of a job whose runs have been killed at 4 GiB and fixed at 5 GiB is retried within
// what worked, and the local storage its runs have outgrown (evicted at 20 GiB, fine
// at 30) is raised with it rather than left to evict the retry.
func TestWithoutPeaksTheLimitsTriedSizeTheRetry(t *testing.T) {
	r := newRecommender(t)
	res := func(mem, disk float64) failure.Resources {
		return failure.Resources{CPUMillis: 4000, MemoryBytes: int64(mem * (1 << 30)), EphemeralStorageBytes: int64(disk * (1 << 30))}
	}
	var history []failure.Outcome
	for range 8 {
		history = append(history,
			failure.Outcome{Template: "etl", Attempt: 1, Resources: res(4, 20), Category: failure.OOMMemory, DurationSeconds: 300},
			failure.Outcome{Template: "etl", Attempt: 2, Resources: res(5, 20), Category: failure.DiskFull, DurationSeconds: 1700},
			failure.Outcome{Template: "etl", Attempt: 3, Resources: res(5, 30), Succeeded: true, DurationSeconds: 1800})
	}
	ev := &failure.Event{ID: "e2", Job: failure.Job{Name: "etl-9", Template: "etl", Attempt: 1, Kind: failure.Batch, Resources: res(4, 20)},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 300, Node: "n1"}}
	history = append(history, failure.Outcome{Template: "etl", Attempt: 1, Resources: res(4, 20), Category: failure.OOMMemory, DurationSeconds: 300})
	rec := r.Recommend(ev, history)
	if !rec.Retry {
		t.Fatalf("not retried: %s", rec.Explanation)
	}
	got := rec.Options[0].Resources
	if mem := float64(got.MemoryBytes) / (1 << 30); mem <= 4 || mem > 5.5 {
		t.Errorf("memory %.2f GiB, want within the 4 to 5 GiB the runs needed (5.5 at most)", mem)
	}
	// Local storage is cheap: a margin above what worked costs little.
	if disk := float64(got.EphemeralStorageBytes) / (1 << 30); disk < 30 || disk > 45 {
		t.Errorf("ephemeral storage %.1f GiB, want raised past the 20 GiB the runs outgrew, to the 30 that worked or a little more", disk)
	}
	if !strings.Contains(rec.Explanation, "no recorded peak, and the limits they succeeded and were killed at put its need at or below") {
		t.Errorf("explanation %q does not say where the need comes from", rec.Explanation)
	}
}

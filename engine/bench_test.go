package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// BenchmarkIntake measures Handle on batches of 1,000 events — decode, dedup,
// decide, one durable SQLite transaction — and reports events/s. The mix is memory,
// GPU-memory, preemption and user-code failures across 50 templates.
func BenchmarkIntake(b *testing.B) {
	store, err := ledger.Open(context.Background(), filepath.Join(b.TempDir(), "ledger.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	pol := policy.Default()
	in := &Intake{Ledger: store, Recommender: sharedRecommender(b), Policy: &pol}
	const batch = 1000
	failures := []failure.Signals{
		{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 1800},
		{Reason: "Error", ExitCode: 1, DurationSeconds: 400, LogTail: "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"},
		{Reason: "DisruptionTarget", ExitCode: 143, DurationSeconds: 900, Message: "Pod was preempted"},
		{Reason: "Error", ExitCode: 1, DurationSeconds: 30, LogTail: "Traceback (most recent call last):\nTypeError: unsupported operand"},
	}
	n := 0
	b.ResetTimer()
	for b.Loop() {
		msgs := make([]ingest.Message, batch)
		for i := range msgs {
			ev := failure.Event{ID: fmt.Sprintf("bench-%d", n), Job: failure.Job{Namespace: "ml", Name: fmt.Sprintf("job-%d", n),
				Template: fmt.Sprintf("tmpl-%d", n%50), Kind: failure.Training,
				Resources: failure.Resources{CPUMillis: 8000, MemoryBytes: 32 << 30, GPU: 1, GPUType: "nvidia-a100-40gb"},
				Params:    map[string]string{"micro_batch_size": "32"},
				Tunables:  map[string]failure.Tunable{"micro_batch_size": {Role: failure.RoleMicroBatch, Min: 1, Max: 256}}},
				Failure: failures[n%len(failures)]}
			data, _ := json.Marshal(&ev)
			msgs[i] = ingest.Message{Topic: "f", Offset: int64(n), Value: data, Time: time.Now()}
			n++
		}
		if _, err := in.Handle(context.Background(), msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

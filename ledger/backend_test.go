package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/testwait"
	"github.com/autofix/autofix/ledger/ledgertest"
)

// forEachDSN runs fn against a fresh, empty ledger location of every backend.
func forEachDSN(t testing.TB, fn func(t testing.TB, dsn string)) { ledgertest.ForEachDSN(t, fn) }

// forEachBackend runs fn with a freshly opened, empty ledger on every backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	forEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		fn(t, openTest(t, dsn))
	})
}

// openTest opens the ledger at dsn and closes it when the test ends.
func openTest(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open(%q) = %v", dsn, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

// retryBusy calls fn again while it fails with SQLITE_BUSY, until the test's
// deadline: another connection held the write lock for longer than the ledger's
// busy_timeout (5 s), as one can on a loaded machine. The ledger's callers try again
// (the consumer hands the batch again; a replica that cannot start is restarted); a
// test that counted on the lock coming within 5 s would be timing the machine.
func retryBusy(t *testing.T, fn func() error) error {
	t.Helper()
	ctx := testwait.Context(t)
	for {
		err := fn()
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || ctx.Err() != nil {
			return err
		}
		t.Logf("the ledger was busy for longer than its busy_timeout; trying again: %v", err)
	}
}

// t0 is the time the test fixtures happen around.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testEvent is a realistic failure event of job in namespace ns (template tmpl).
func testEvent(id, ns, tmpl string, attempt int) *failure.Event {
	return &failure.Event{
		ID:     id,
		Time:   t0,
		Source: "watcher",
		Job: failure.Job{
			Namespace: ns, Name: fmt.Sprintf("%s-%d", tmpl, attempt), Kind: failure.Training, Template: tmpl,
			Attempt: attempt, Image: "registry.example/train:1.4",
			Resources: failure.Resources{CPUMillis: 8000, MemoryBytes: 32 << 30, GPU: 1, GPUType: "nvidia-a100-40gb"},
			Params:    map[string]string{"batch_size": "64", "precision": "bf16"},
		},
		Failure: failure.Signals{
			Reason: "OOMKilled", ExitCode: 137, Message: "container train was OOM-killed",
			LogTail:         strings.Repeat("step 1200 loss=0.4132 lr=3e-4 tokens/s=18234\n", 40) + "Killed\n",
			DurationSeconds: 5400, Node: "gpu-node-7",
			Usage: failure.Usage{PeakMemoryBytes: 32 << 30, PeakGPUMemoryBytes: 38 << 30},
		},
	}
}

// testRec is a recommendation for ev: more memory.
func testRec(ev *failure.Event, cat failure.Category) *failure.Recommendation {
	opt := failure.Option{
		Resources: failure.Resources{CPUMillis: 8000, MemoryBytes: 48 << 30, GPU: 1, GPUType: "nvidia-a100-40gb"},
		Params:    ev.Job.Params, Changes: []string{"memory 32Gi -> 48Gi"},
		PSuccess: 0.91, PFix: 0.96, RuntimeSeconds: 7200, RunCost: 6.1, ExpectedCost: 6.8, CostMultiple: 1.1, Pareto: true,
	}
	return &failure.Recommendation{
		EventID: ev.ID,
		Job:     failure.JobRef{Namespace: ev.Job.Namespace, Name: ev.Job.Name, Template: ev.Job.Template, Attempt: ev.Job.Attempt},
		Classification: failure.Classification{
			Category: cat, Retryable: cat.DefaultRetryable(), Action: cat.DefaultAction(), Confidence: 0.93,
			Rules: []string{"oom-killed"}, Evidence: []string{"Killed"},
		},
		Retry: true, Options: []failure.Option{opt}, Chosen: 0, Considered: 120,
		Explanation: "The job ran out of memory; retry with 48Gi.", ModelVersion: "test",
	}
}

// entryOpt varies the fixture entry: zero fields take defaults (namespace team-a,
// template train-llm, chain "chain-"+id, attempt 1, received t0, oom_memory).
type entryOpt struct {
	ns, tmpl, chain string
	attempt         int
	at              time.Time
	cat             failure.Category
	kind            failure.JobKind // the job's kind; training when empty
	workload        string          // the workload's API kind; a batch Job when empty
}

// entry is a valid entry for event id in state st; an approved one carries attempt
// o.attempt+1 of its chain.
func entry(id string, st State, o entryOpt) Entry {
	if o.ns == "" {
		o.ns = "team-a"
	}
	if o.tmpl == "" {
		o.tmpl = "train-llm"
	}
	if o.chain == "" {
		o.chain = "chain-" + id
	}
	if o.attempt == 0 {
		o.attempt = 1
	}
	if o.at.IsZero() {
		o.at = t0
	}
	if o.cat == "" {
		o.cat = failure.OOMMemory
	}
	ev := testEvent(id, o.ns, o.tmpl, o.attempt)
	if o.kind != "" {
		ev.Job.Kind = o.kind
	}
	rec := testRec(ev, o.cat)
	e := Entry{
		EventID: id, Source: Source{Topic: "failures", Partition: 2, Offset: 1000}, ReceivedAt: o.at,
		Event: ev, ChainID: o.chain, Recommendation: rec, State: st, Reason: "policy says " + string(st), Actor: "policy",
		Workload: o.workload,
	}
	if st == Approved {
		e.Attempt = &Attempt{
			Number: o.attempt + 1, JobName: fmt.Sprintf("%s-af%d-%s", o.tmpl, o.attempt+1, id),
			Resources: rec.Options[0].Resources, Params: rec.Options[0].Params,
		}
	}
	return e
}

// rejected is a malformed message recorded at position id.
func rejected(id string, at time.Time) Entry {
	return Entry{EventID: id, Source: Source{Topic: "failures", Partition: 0, Offset: 7}, ReceivedAt: at,
		Error: "job.name: required", State: Rejected, Actor: "ingest"}
}

// mustRecord records entries and returns the fresh flags.
func mustRecord(t testing.TB, s *Store, entries ...Entry) []bool {
	t.Helper()
	fresh, err := s.Record(context.Background(), entries)
	if err != nil {
		t.Fatalf("Record(%d entries) = %v", len(entries), err)
	}
	return fresh
}

func mustGet(t testing.TB, s *Store, id string) Remediation {
	t.Helper()
	m, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%q) = %v", id, err)
	}
	return m
}

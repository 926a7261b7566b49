package registry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
)

// t0 is when the recorded retries start; now is the registry's clock.
var (
	t0  = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	now = t0.Add(20 * 24 * time.Hour)
)

// retryPlan is one remediation to record: its failure received at, in namespace
// ns, its fix of memory mem for a need of need.
type retryPlan struct {
	id, ns, tmpl string
	at           time.Time
	need, mem    int64
}

// plan is n retries, one an hour from t0, over ten templates: a quarter in namespace
// team-a, the rest in team-b. Each fix's memory is drawn around the need and
// succeeds when it covers it.
func plan(n int) []retryPlan {
	rng := rand.New(rand.NewPCG(3, 14))
	out := make([]retryPlan, n)
	for i := range out {
		need := int64(8+i%10*2) << 30
		ns := "team-b"
		if i%4 == 0 {
			ns = "team-a"
		}
		out[i] = retryPlan{id: fmt.Sprintf("r%03d", i), ns: ns, tmpl: fmt.Sprintf("etl-%d", i%10),
			at: t0.Add(time.Duration(i) * time.Hour), need: need, mem: int64(float64(need) * (0.7 + 0.7*rng.Float64()))}
	}
	return out
}

// fill records the retries as serve does: the failure and its fix approved, the fix
// submitted a minute later and finished ten minutes later as the watcher measured
// it (with its peak). Each retry's fix ends before the next failure is received.
func fill(t testing.TB, store *ledger.Store, plan []retryPlan) {
	t.Helper()
	fillShadowed(t, store, plan, nil)
}

// fillShadowed is fill with each decision made by version 1 and predicted in
// shadow as shadow says, given whether its fix will succeed (nil: no shadow).
func fillShadowed(t testing.TB, store *ledger.Store, plan []retryPlan, shadow func(succeeds bool) *failure.Shadow) {
	t.Helper()
	ctx := context.Background()
	for _, p := range plan {
		res := func(mem int64) failure.Resources { return failure.Resources{CPUMillis: 4000, MemoryBytes: mem} }
		ev := &failure.Event{ID: p.id, Time: p.at, Source: "watcher",
			Job:     failure.Job{Namespace: p.ns, Name: p.id, Kind: failure.Batch, Template: p.tmpl, Attempt: 1, Resources: res(p.need * 9 / 10)},
			Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 1200}}
		opt := failure.Option{Resources: res(p.mem), PSuccess: 0.9, PFix: 0.9}
		rec := &failure.Recommendation{EventID: p.id, Job: failure.JobRef{Namespace: p.ns, Name: p.id, Template: p.tmpl, Attempt: 1},
			Classification: failure.Classification{Category: failure.OOMMemory, Retryable: true, Confidence: 0.95},
			Retry:          true, Options: []failure.Option{opt}, Chosen: 0, ModelRegistryVersion: 1}
		if shadow != nil {
			rec.Shadow = shadow(p.mem >= p.need)
		}
		_, err := store.Record(ctx, []ledger.Entry{{EventID: p.id, ReceivedAt: p.at, Event: ev, ChainID: "chain-" + p.id,
			Recommendation: rec, State: ledger.Approved, Actor: "policy", Reason: "automatic",
			Attempt: &ledger.Attempt{Number: 2, JobName: p.id + "-af2", Resources: opt.Resources, Option: &opt}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Transition(ctx, p.id, ledger.Approved, ledger.Submitted, "dispatcher", "", p.at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		to, o := ledger.Failed, failure.Outcome{Resources: opt.Resources, DurationSeconds: 300, Usage: failure.Usage{PeakMemoryBytes: p.mem}}
		if p.mem >= p.need {
			to, o.DurationSeconds, o.Usage.PeakMemoryBytes = ledger.Succeeded, 3000, p.need
		}
		o.Succeeded = to == ledger.Succeeded
		if err := store.Finish(ctx, p.id, to, o, "watcher", "", p.at.Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
}

// artifact is the default models changed by edit, saved.
func artifact(t testing.TB, edit func(m *models.Models)) []byte {
	t.Helper()
	m, err := models.Default()
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	data, err := m.Save()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// constant are models whose P(success) is sigmoid(w0) whatever the retry: they know
// nothing.
func constant(t testing.TB, w0 float64) []byte {
	return artifact(t, func(m *models.Models) {
		m.Name = fmt.Sprintf("constant-%g", w0)
		m.Success = &models.Logistic{Weights: []float64{w0, 0}}
	})
}

// openLedger opens a SQLite ledger at path, closed when the test ends.
func openLedger(t testing.TB, path string) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newRegistry is a registry of store with the test's clock and gates.
func newRegistry(t *testing.T, store *ledger.Store, g Gates) *Registry {
	t.Helper()
	r, err := New(Options{Ledger: store, Gates: g, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// withCandidate is a registry on a new SQLite ledger with gates g: the embedded
// models as version 1, active, and a constant candidate (P(success) sigmoid(2))
// registered as version 2.
func withCandidate(t *testing.T, g Gates) (*Registry, *ledger.Store, ledger.ModelVersion) {
	t.Helper()
	store := openLedger(t, filepath.Join(t.TempDir(), "ledger.db"))
	r := newRegistry(t, store, g)
	if _, _, err := r.EnsureDefault(context.Background(), "autofix"); err != nil {
		t.Fatal(err)
	}
	cand, err := r.Register(context.Background(), constant(t, 2), Registration{Actor: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	return r, store, cand
}

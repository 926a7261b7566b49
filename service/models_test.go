package service

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/registry"
)

// replica is the part of a service that decides, on the ledger at path: its brain
// and the model registry it follows.
func replica(t *testing.T, path string, log *slog.Logger) *Service {
	t.Helper()
	cfg := config.Default()
	b, err := newBrain(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := ledger.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	s := &Service{cfg: &cfg, log: log, store: store, brain: b}
	if err := s.openRegistry(context.Background()); err != nil {
		t.Fatalf("openRegistry = %v", err)
	}
	return s
}

// TestReplicasRunTheActiveModels: two replicas on one SQLite ledger file; the first
// registers the embedded models as version 1; a version promoted on one is what the
// other's recommender predicts with after its next poll; a replica started while a
// version that does not load is active runs the embedded models, and says so.
func TestReplicasRunTheActiveModels(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	var logs bytes.Buffer
	a, b := replica(t, path, slog.New(slog.DiscardHandler)), replica(t, path, slog.New(slog.DiscardHandler))
	def, _ := models.Default()
	if in := b.registry.InUse(); in.Version != 1 || b.brain.rec.Models().Name != def.Name {
		t.Fatalf("replica b runs version %d (%s); want 1, the embedded models", in.Version, b.brain.rec.Models().Name)
	}
	m := *def
	m.Name, m.Success = "constant", &models.Logistic{Weights: []float64{1, 0}}
	data, err := m.Save()
	if err != nil {
		t.Fatal(err)
	}
	v, err := a.registry.Register(ctx, data, registry.Registration{Actor: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.registry.Promote(ctx, v.Version, registry.Promotion{Actor: "ada", Force: true, Reason: "a test"}); err != nil {
		t.Fatal(err)
	}
	if err := b.registry.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.brain.rec.Models().Name; got != "constant" || b.registry.InUse().Version != v.Version {
		t.Errorf("after a promotion on a and a poll on b, b's recommender predicts with %q (version %d); want constant (%d)",
			got, b.registry.InUse().Version, v.Version)
	}

	newer, err := a.store.RegisterModel(ctx, ledger.ModelVersion{Name: "v3-format", Source: ledger.SourceSimulator, RegisteredBy: "ci",
		Content: []byte(`{"kind":"autofix-retry-models","version":3}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.PromoteModel(ctx, ledger.ModelPromotion{From: v.Version, To: newer.Version, Action: ledger.ModelForce,
		Actor: "ci", Reason: "newer", Gates: &ledger.ModelGates{Failed: []string{"not scored"}}}); err != nil {
		t.Fatal(err)
	}
	c := replica(t, path, slog.New(slog.NewTextHandler(&logs, nil)))
	if in := c.registry.InUse(); in.Version != 0 || c.brain.rec.Models().Name != def.Name {
		t.Errorf("a replica started with an active version that does not load runs version %d (%s); want the embedded models",
			in.Version, c.brain.rec.Models().Name)
	}
	if !strings.Contains(logs.String(), "the active model version does not load") {
		t.Errorf("the log does not say the active version does not load:\n%s", logs.String())
	}
}

// TestReplicasEvaluateTheShadowedVersion: a version put in shadow on one replica is
// what the other's recommender also predicts with after its next poll — each
// decision then carries the candidate's view and names the active version — and
// stops when the shadow evaluation does.
func TestReplicasEvaluateTheShadowedVersion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	a, b := replica(t, path, slog.New(slog.DiscardHandler)), replica(t, path, slog.New(slog.DiscardHandler))
	def, _ := models.Default()
	m := *def
	m.Name, m.Success = "pessimist", &models.Logistic{Weights: []float64{-3, 0}}
	data, err := m.Save()
	if err != nil {
		t.Fatal(err)
	}
	v, err := a.registry.Register(ctx, data, registry.Registration{Actor: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.registry.StartShadow(ctx, v.Version, registry.ShadowChange{Actor: "ada"}); err != nil {
		t.Fatal(err)
	}
	if err := b.registry.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.brain.rec.Shadowed(); got != v.Version {
		t.Fatalf("replica b evaluates version %d in shadow; want %d", got, v.Version)
	}
	ev := &failure.Event{ID: "e1", Job: failure.Job{Name: "etl-7", Template: "etl", Attempt: 1, Kind: failure.Batch,
		Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 16 << 30}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 900}}
	rec := b.brain.rec.Recommend(ev, nil)
	if rec.ModelRegistryVersion != 1 || rec.Shadow == nil || rec.Shadow.Version != v.Version || rec.Shadow.PSuccess >= 0.5 {
		t.Errorf("b's recommendation: models version %d, shadow %+v; want version 1 deciding, the pessimist's view", rec.ModelRegistryVersion, rec.Shadow)
	}
	if _, err := a.registry.StopShadow(ctx, registry.ShadowChange{Actor: "ada"}); err != nil {
		t.Fatal(err)
	}
	if err := b.registry.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if rec := b.brain.rec.Recommend(ev, nil); rec.Shadow != nil || b.brain.rec.Shadowed() != 0 {
		t.Errorf("after the evaluation stopped: shadow %+v; want none", rec.Shadow)
	}
}

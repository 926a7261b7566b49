package service

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autofix/autofix/config"
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

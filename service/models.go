package service

import (
	"context"
	"errors"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/registry"
)

// openRegistry opens the model registry of the ledger: it registers the embedded
// models as the first version when the registry is empty, and runs the active
// version from the start. An active version that does not load is logged, and the
// embedded models run until a version that loads is made active.
func (s *Service) openRegistry(ctx context.Context) error {
	var err error
	s.registry, err = registry.New(registry.Options{Ledger: s.store, Catalogue: s.cfg.Catalogue, Gates: Gates(&s.cfg.Models),
		InUse: s.brain.models, OnChange: s.modelsChanged, OnShadow: s.shadowChanged, Log: s.log})
	if err != nil {
		return err
	}
	if _, registered, err := s.registry.EnsureDefault(ctx, "autofix"); err != nil {
		return err
	} else if registered {
		s.log.Info("model registry: the embedded models are its first version, active", "name", s.brain.models.Name)
	}
	err = s.registry.Poll(ctx)
	var le *registry.LoadError
	if errors.As(err, &le) {
		s.log.Error("the active model version does not load: running the embedded models", "active", le.Version, "err", le.Err)
		return nil
	}
	return err
}

// Gates are the promotion's gates of the configuration's models.promotion, with the
// history its decisions read.
func Gates(m *config.Models) registry.Gates {
	p := &m.Promotion
	return registry.Gates{MinOutcomes: p.MinOutcomes, CalibrationMargin: p.CalibrationMargin, Window: p.Window,
		MaxOutcomes: p.MaxOutcomes, MaxPerNamespace: p.MaxPerNamespace, HistoryLimit: engine.DefaultHistoryLimit}
}

// modelsChanged makes the recommender predict with the registry's new active
// version, and the metrics say so.
func (s *Service) modelsChanged(version int, m *models.Models) {
	s.brain.rec.SetVersion(version, m)
	if s.metrics != nil {
		s.metrics.ModelInUse(m.Name, version)
	}
}

// shadowChanged makes the recommender evaluate the registry's version in shadow
// (nil m: none).
func (s *Service) shadowChanged(version int, m *models.Models) {
	s.brain.rec.SetShadow(version, m)
	if m == nil {
		s.log.Info("models: no version is evaluated in shadow")
		return
	}
	s.log.Info("models: evaluating a version in shadow", "version", version, "name", m.Name)
}

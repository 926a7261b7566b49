package service

import (
	"context"

	"github.com/autofix/autofix/autonomy"
)

// assembleAutonomy builds graduated autonomy (policy.autonomy): its metrics, and a
// first read of the grants in force, so that the intake honours them from its first
// batch. The grants are then polled on every replica (Run); the check that revokes
// a failing kind runs on the leader (act), woken by every failure the watcher
// records. A ledger that cannot be read now leaves no grant in force until the
// first poll that can: fixes are reviewed meanwhile, never applied on a guess.
func (s *Service) assembleAutonomy(ctx context.Context) error {
	s.autonomy = autonomy.New(autonomy.Options{Ledger: s.store, Thresholds: &s.cfg.Policy.Autonomy, Log: s.log})
	if err := s.metrics.Register(s.autonomy); err != nil {
		return err
	}
	if err := s.autonomy.Grants().Refresh(ctx); err != nil {
		s.log.Warn("autonomy: could not read the grants in force; none applies until the next poll", "err", err)
	}
	return nil
}

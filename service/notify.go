package service

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/notify"
)

// newNotifier builds the review alerts of notify.alertmanager; nil without URLs.
// It runs on the leader (act): one sender keeps the rounds in order, and a new
// leader sends every review still waiting at once. Alerts carry their identity in
// their labels, so a review sent by two replicas during a hand-over is one alert
// to Alertmanager.
func newNotifier(cfg *config.Config, store *ledger.Store, log *slog.Logger) (*notify.Notifier, error) {
	a := &cfg.Notify.Alertmanager
	if len(a.URLs) == 0 {
		return nil, nil
	}
	tlsConfig, err := a.TLS.ClientConfig(a.HasHTTPS())
	if err != nil {
		return nil, err
	}
	n, err := notify.New(notify.Options{
		URLs: a.URLs, ExternalURL: cfg.HTTP.ExternalURL, TeamLabel: a.TeamLabel, Labels: a.Labels,
		ResendInterval: a.ResendInterval, EscalateAfter: a.EscalateAfter, MaxAlerts: a.MaxAlerts, Timeout: a.Timeout,
		BearerTokenFile: a.BearerTokenFile, BasicAuthUsername: a.BasicAuth.Username, BasicAuthPasswordFile: a.BasicAuth.PasswordFile,
		TLS: tlsConfig, Log: log,
	}, store)
	if err != nil {
		return nil, fmt.Errorf("notify.alertmanager: %w", err)
	}
	return n, nil
}

// wakeNotifier asks the notifier, if there is one, for a round now.
func (s *Service) wakeNotifier() {
	if s.notifier != nil {
		s.notifier.Wake()
	}
}

// runNotifier sends the review alerts until ctx ends, if there is a notifier.
func (s *Service) runNotifier(ctx context.Context) {
	if s.notifier != nil {
		s.notifier.Run(ctx)
	}
}

// Reject rejects a fix and wakes the notifier: its alert is resolved at once.
func (w wakingReviewer) Reject(ctx context.Context, id, who, reason string) error {
	err := w.Service.Reject(ctx, id, who, reason)
	if err == nil {
		w.decided()
	}
	return err
}

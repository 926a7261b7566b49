package service

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

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

// newWebhooks builds the review messages of notify.webhooks; nil without any. They
// run on the leader (act), like the alerts; each message is queued in the ledger
// once per webhook, so a new leader neither repeats nor loses one (a post under
// way when the lease changes hands may be made twice: receivers deduplicate by its
// delivery id).
func newWebhooks(cfg *config.Config, store *ledger.Store, log *slog.Logger) (*notify.Webhooks, error) {
	hooks := cfg.Notify.Webhooks
	if len(hooks) == 0 {
		return nil, nil
	}
	opts := make([]notify.WebhookOptions, len(hooks))
	for i := range hooks {
		h := &hooks[i]
		tlsConfig, err := h.ClientTLS(fmt.Sprintf("notify.webhooks[%d].tls", i))
		if err != nil {
			return nil, err
		}
		kinds := make([]ledger.DeliveryKind, len(h.Events))
		for j, e := range h.Events {
			kinds[j] = ledger.DeliveryKind(e)
		}
		opts[i] = notify.WebhookOptions{Name: h.Name, URL: h.URL, URLFile: h.URLFile, Format: h.Format, SecretFile: h.SecretFile,
			Kinds: kinds, EscalateAfter: h.EscalateAfterOrDefault(), Timeout: h.Timeout, MaxAttempts: h.MaxAttempts,
			ExternalURL: cfg.HTTP.ExternalURL, TeamLabel: cfg.Notify.Alertmanager.TeamLabel, TLS: tlsConfig}
	}
	w, err := notify.NewWebhooks(opts, store, log)
	if err != nil {
		return nil, fmt.Errorf("notify.%w", err)
	}
	return w, nil
}

// wakeNotifier asks the notifier and the webhooks, if there are any, for a round
// now. It never blocks.
func (s *Service) wakeNotifier() {
	if s.notifier != nil {
		s.notifier.Wake()
	}
	if s.webhooks != nil {
		s.webhooks.Wake()
	}
}

// runNotifier sends the review alerts and messages until ctx ends, if there is a
// notifier or webhooks.
func (s *Service) runNotifier(ctx context.Context) {
	var wg sync.WaitGroup
	if s.notifier != nil {
		wg.Go(func() { s.notifier.Run(ctx) })
	}
	if s.webhooks != nil {
		wg.Go(func() { s.webhooks.Run(ctx) })
	}
	wg.Wait()
}

// Reject rejects a fix and wakes the notifier: its alert is resolved at once.
func (w wakingReviewer) Reject(ctx context.Context, id, who, reason string) error {
	err := w.Service.Reject(ctx, id, who, reason)
	if err == nil {
		w.decided()
	}
	return err
}

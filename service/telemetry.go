package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/remediate"
	"github.com/autofix/autofix/telemetry"
)

// UsageSource is where the watcher reads the peaks of runs (remediate.UsageSource):
// Prometheus at metrics.url, through package telemetry; nil when metrics.url is
// empty. m is validated.
func UsageSource(m *config.Metrics, log *slog.Logger) (remediate.UsageSource, error) {
	if m.URL == "" {
		return nil, nil
	}
	u, err := url.Parse(m.URL)
	if err != nil {
		return nil, errors.New("metrics.url: not a URL")
	}
	tlsConfig, err := m.TLS.ClientConfig(u.Scheme == "https")
	if err != nil {
		return nil, err
	}
	src, err := telemetry.New(telemetry.Options{
		URL: m.URL, TLS: tlsConfig, BearerTokenFile: m.BearerTokenFile,
		BasicAuthUsername: m.BasicAuth.Username, BasicAuthPasswordFile: m.BasicAuth.PasswordFile,
		Timeout: m.Timeout, FailureThreshold: m.FailureThreshold, Cooldown: m.Cooldown,
		Memory: m.Memory.Series(), GPUMemory: m.GPUMemory.Series(), EphemeralStorage: m.EphemeralStorage.Series(),
		Log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	auth := "none"
	switch {
	case m.BearerTokenFile != "":
		auth = "bearer token file"
	case m.BasicAuth.Username != "":
		auth = "basic"
	}
	log.Info("usage peaks from Prometheus", "url", m.URL, "auth", auth, "timeout", m.Timeout)
	return prometheusUsage{src}, nil
}

// prometheusUsage answers the watcher from Prometheus.
type prometheusUsage struct{ s *telemetry.Source }

func (p prometheusUsage) Usage(ctx context.Context, q remediate.UsageQuery) (failure.Usage, error) {
	return p.s.Usage(ctx, telemetry.Query{Namespace: q.Namespace, Pods: q.Pods, Container: q.Container,
		Start: q.Start, End: q.End, GPUs: q.GPUs, GPUMemoryBytes: q.GPUMemoryBytes})
}

// serveSimulatedMetrics serves the simulated cluster's Prometheus API on a free
// loopback port, and returns its URL and what stops it.
func (s *Service) serveSimulatedMetrics() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("the simulated cluster's metrics: %w", err)
	}
	srv := &http.Server{Handler: s.simulated.MetricsAPI(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

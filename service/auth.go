package service

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/internal/boundedfile"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/registry"
)

// newAPIServer builds serve's HTTP API: o says what it serves, the http section of
// cfg the rest — limits, cookies, trusted proxies and the TLS certificate.
func newAPIServer(cfg *config.Config, o api.Options) (*api.Server, error) {
	h := &cfg.HTTP
	proxies, err := h.Proxies()
	if err != nil {
		return nil, err
	}
	o.OpenMetrics, o.RatePerSecond, o.Burst, o.Timeout = h.OpenMetrics, h.RatePerSecond, h.Burst, h.RequestTimeout
	o.SecureCookies, o.TrustedProxies = h.CookiesSecure(), proxies
	if h.SessionKeyFile != "" {
		data, err := boundedfile.Read(h.SessionKeyFile, 1<<20)
		if err != nil {
			return nil, fmt.Errorf("http.sessionKeyFile: %w", err)
		}
		if o.SessionKeys, err = api.ParseSessionKeys(data); err != nil {
			return nil, fmt.Errorf("http.sessionKeyFile: %s: %w", h.SessionKeyFile, err)
		}
	} else if o.Log != nil {
		o.Log.Warn("http.sessionKeyFile is not set: review-page sessions are signed with a key of this process only " +
			"(with more than one replica, a login works on one of them; a restart logs everyone out)")
	}
	if h.TLS.Enabled() {
		if o.Certificate, err = api.LoadCertificate(h.TLS.CertFile, h.TLS.KeyFile, o.Log); err != nil {
			return nil, fmt.Errorf("http.tls: %w", err)
		}
	}
	return api.New(o)
}

// tokenReload is how often serve re-reads its token sources; staleTokens how long it
// keeps a Secret's tokens it can no longer read (a revocation must not wait for the
// API server to come back).
const (
	tokenReload = 10 * time.Second
	staleTokens = 5 * time.Minute
)

// loadAuth loads the API tokens — DATA_DIR/tokens.json and, if configured, a
// Kubernetes Secret. On a first start with no token anywhere it creates an admin
// token in DATA_DIR/admin-token and shows it once: on the terminal, never in the
// log. The sources' run re-reads them until the service stops.
func loadAuth(ctx context.Context, cfg *config.Config, kube kubernetes.Interface, log *slog.Logger) (*auth.Authenticator, *tokenSources, error) {
	path := filepath.Join(cfg.DataDir, auth.StoreFile)
	secretNS, secretName, fromSecret := strings.Cut(cfg.HTTP.TokensSecret, "/")
	if fromSecret && kube == nil {
		return nil, nil, fmt.Errorf("http.tokensSecret: %s needs a cluster (kubernetes.kubeconfig)", cfg.HTTP.TokensSecret)
	}
	if !fromSecret {
		s, err := auth.OpenStore(path)
		if err != nil {
			return nil, nil, err
		}
		secret, created, err := auth.FirstStart(s, cfg.DataDir)
		if err != nil {
			return nil, nil, err
		}
		if created {
			file := filepath.Join(cfg.DataDir, auth.AdminTokenFile)
			if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				fmt.Fprintf(os.Stderr, "\nautofix: first start: an admin API token was created (shown once; also in %s):\n\n    %s\n\n", file, secret)
			}
			log.Warn("first start: an admin API token was created; it is in the file (mode 0600)", "file", file)
		}
	}
	// The file's tokens and the Secret's are read apart: one source failing keeps its
	// last tokens (the Secret's for at most staleTokens) and never the other's.
	src := &tokenSources{path: path, log: log}
	if fromSecret {
		src.secret = func(ctx context.Context) ([]auth.Token, error) {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return auth.FromSecret(sctx, kube, secretNS, secretName)
		}
	}
	if err := src.reload(ctx, true); err != nil {
		return nil, nil, err
	}
	// A token the authenticator does not know makes it read the sources again (at
	// most once a second), so a token just created works at once.
	a := auth.New(src.tokens(), auth.Options{Refresh: func(ctx context.Context) ([]auth.Token, error) {
		if err := src.reload(ctx, false); err != nil {
			return nil, err
		}
		return src.tokens(), nil
	}})
	log.Info("API tokens loaded", "count", a.Len(), "file", path, "secret", cfg.HTTP.TokensSecret)
	return a, src, nil
}

// run has a re-read the token sources every tokenReload until ctx ends: a revoked
// token stops working within tokenReload even if no one shows a new one.
func (t *tokenSources) run(ctx context.Context, a *auth.Authenticator) {
	tick := time.NewTicker(tokenReload)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		before := a.Len()
		_ = a.Reload(ctx) // through the refresher: one read at a time
		if n := a.Len(); n != before {
			t.log.Info("API tokens reloaded", "count", n)
		}
	}
}

// tokenSources are the token file and, if configured, the Secret, each with the
// tokens last read from it.
type tokenSources struct {
	path   string
	secret func(context.Context) ([]auth.Token, error)
	log    *slog.Logger

	mu               sync.Mutex // reload runs on the timer and on an unknown token
	file, fromSecret []auth.Token
	secretReadAt     time.Time
}

// reload reads both sources. At start (first), an unreadable token file is an error;
// later it keeps the file's last tokens. A deleted Secret revokes its tokens; one
// that cannot be read keeps them for staleTokens at most.
func (t *tokenSources) reload(ctx context.Context, first bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := auth.OpenStore(t.path)
	switch {
	case err == nil:
		t.file = s.Tokens()
	case first:
		return err
	default:
		t.log.Warn("API tokens: the token file cannot be read; keeping its last tokens", "err", err)
	}
	if t.secret == nil {
		return nil
	}
	more, err := t.secret(ctx)
	switch {
	case err == nil:
		t.fromSecret, t.secretReadAt = more, time.Now()
	case apierrors.IsNotFound(err): // deleted: its tokens are revoked
		t.fromSecret, t.secretReadAt = nil, time.Now()
		t.log.Warn("API tokens: the Secret does not exist; only the token file's tokens work")
	case first || time.Since(t.secretReadAt) > staleTokens:
		t.fromSecret = nil
		t.log.Error("API tokens: the Secret cannot be read; only the token file's tokens work until it can", "err", err)
	default:
		t.log.Warn("API tokens: the Secret cannot be read; keeping its last tokens for now", "err", err)
	}
	return nil
}

func (t *tokenSources) tokens() []auth.Token {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append(append([]auth.Token(nil), t.file...), t.fromSecret...)
}

// consumerCollector exposes the Kafka consumer's counters.
func consumerCollector(c *ingest.Consumer) prometheus.Collector {
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		st := c.Stats()
		ch <- prometheus.MustNewConstMetric(consumedDesc, prometheus.CounterValue, float64(st.Consumed))
		ch <- prometheus.MustNewConstMetric(deadLetteredDesc, prometheus.CounterValue, float64(st.DeadLettered))
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(st.Lag))
	}, consumedDesc, deadLetteredDesc, lagDesc)
}

var (
	consumedDesc     = prometheus.NewDesc("autofix_events_consumed_total", "Kafka messages consumed (valid or not).", nil, nil)
	deadLetteredDesc = prometheus.NewDesc("autofix_events_dead_lettered_total", "Messages sent to the dead-letter topic.", nil, nil)
	lagDesc          = prometheus.NewDesc("autofix_consumer_lag", "Messages behind the end of the consumer's partitions.", nil, nil)
)

type collector struct {
	collect func(chan<- prometheus.Metric)
	descs   []*prometheus.Desc
}

func collectorFunc(fn func(chan<- prometheus.Metric), descs ...*prometheus.Desc) prometheus.Collector {
	return &collector{collect: fn, descs: descs}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// refreshGauges keeps the per-state remediation gauge current, and, every minute,
// the models' drift.
func refreshGauges(ctx context.Context, store *ledger.Store, m *api.Metrics) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	var drifted time.Time
	for {
		if counts, err := store.Counts(ctx); err == nil {
			m.Remediations(counts)
		}
		if time.Since(drifted) >= time.Minute {
			if outs, err := store.RecentPredictedOutcomes(ctx, registry.DriftWindow); err == nil {
				m.Drift(registry.MeasureDrift(outs))
				drifted = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

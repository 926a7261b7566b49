package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/autofix/autofix/telemetry"
)

// Metrics is the Prometheus server the watcher reads the peaks of runs from
// (package telemetry; docs/kubernetes.md, "Peak usage"). Without a URL no peaks
// are looked up, except on the simulated cluster, which answers them itself.
type Metrics struct {
	// URL is the server's base URL, http:// or https:// (a path prefix is kept),
	// e.g. http://prometheus-k8s.monitoring.svc:9090. Credentials do not go in it.
	URL string `yaml:"url"`
	// BearerTokenFile holds a token sent as "Authorization: Bearer" (e.g. the pod's
	// service account token, for a Prometheus behind kube-rbac-proxy). It is read
	// for every request, so a rotated token is used at once.
	BearerTokenFile string `yaml:"bearerTokenFile"`
	// BasicAuth authenticates with a user name and a password file instead.
	BasicAuth MetricsBasicAuth `yaml:"basicAuth"`
	// TLS configures connections to an https:// URL.
	TLS MetricsTLS `yaml:"tls"`
	// Timeout bounds one lookup (a run's three peaks, queried together): the
	// longest a Prometheus that does not answer delays an event (default 2s).
	Timeout time.Duration `yaml:"timeout"`
	// FailureThreshold is how many lookups in a row may fail (no connection, no
	// answer in time, a server error) before lookups stop for Cooldown and events go
	// without peaks at once (defaults 3 and 1m); then one lookup tries again.
	FailureThreshold int           `yaml:"failureThreshold"`
	Cooldown         time.Duration `yaml:"cooldown"`
	// Memory, GPUMemory and EphemeralStorage name the series of the three peaks;
	// the defaults are kube-prometheus's (cAdvisor through the kubelet) and the DCGM
	// exporter's.
	Memory           MetricSeries `yaml:"memory"`
	GPUMemory        MetricSeries `yaml:"gpuMemory"`
	EphemeralStorage MetricSeries `yaml:"ephemeralStorage"`
}

// MetricsBasicAuth is HTTP basic authentication to metrics.url.
type MetricsBasicAuth struct {
	Username string `yaml:"username"`
	// PasswordFile holds the password (one trailing newline is dropped); read for
	// every request. There is no password field.
	PasswordFile string `yaml:"passwordFile"`
}

// MetricsTLS configures TLS to an https:// metrics.url.
type MetricsTLS struct {
	// CAFile is a PEM bundle of the CAs that sign the server's certificate; empty
	// trusts the system's roots.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are a client certificate and its key (both or neither).
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName is the name the server's certificate must carry; empty: the URL's host.
	ServerName string `yaml:"serverName"`
	// InsecureSkipVerify accepts any certificate: encrypted, not authenticated. For
	// a test setup only.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify"`
}

// MetricSeries names the series of one peak.
type MetricSeries struct {
	// Metric is the metric's name; empty: this peak is not looked up.
	Metric string `yaml:"metric"`
	// NamespaceLabel, PodLabel and ContainerLabel are the labels that hold the pod's
	// namespace, its name and the container's name (empty ContainerLabel: the
	// samples are the pod's, whichever container). Behind a scrape that does not
	// honour the exporter's labels they are exported_namespace, exported_pod...
	NamespaceLabel string `yaml:"namespaceLabel"`
	PodLabel       string `yaml:"podLabel"`
	ContainerLabel string `yaml:"containerLabel"`
	// UnitBytes is how many bytes one unit of the metric is (1; 1048576 for MiB).
	UnitBytes float64 `yaml:"unitBytes"`
}

// Series is s as package telemetry takes it.
func (s MetricSeries) Series() telemetry.Series {
	return telemetry.Series{Metric: s.Metric, NamespaceLabel: s.NamespaceLabel, PodLabel: s.PodLabel,
		ContainerLabel: s.ContainerLabel, UnitBytes: s.UnitBytes}
}

func seriesOf(s telemetry.Series) MetricSeries {
	return MetricSeries{Metric: s.Metric, NamespaceLabel: s.NamespaceLabel, PodLabel: s.PodLabel,
		ContainerLabel: s.ContainerLabel, UnitBytes: s.UnitBytes}
}

func defaultMetrics() Metrics {
	return Metrics{Timeout: 2 * time.Second, FailureThreshold: 3, Cooldown: time.Minute,
		Memory: seriesOf(telemetry.DefaultMemory()), GPUMemory: seriesOf(telemetry.DefaultGPUMemory()),
		EphemeralStorage: seriesOf(telemetry.DefaultEphemeralStorage())}
}

// validate checks metrics, reading the files it names; errors name the field and
// never show a secret.
func (m *Metrics) validate() error {
	switch {
	case m.Timeout < 100*time.Millisecond || m.Timeout > 30*time.Second:
		return fmt.Errorf("metrics.timeout: %s, want 100ms to 30s (each failed run's event may wait this long)", m.Timeout)
	case m.FailureThreshold < 1 || m.FailureThreshold > 100:
		return fmt.Errorf("metrics.failureThreshold: %d, want 1 to 100", m.FailureThreshold)
	case m.Cooldown < time.Second || m.Cooldown > time.Hour:
		return fmt.Errorf("metrics.cooldown: %s, want 1s to 1h", m.Cooldown)
	}
	for _, s := range []struct {
		field  string
		series MetricSeries
	}{{"memory", m.Memory}, {"gpuMemory", m.GPUMemory}, {"ephemeralStorage", m.EphemeralStorage}} {
		if err := s.series.Series().Validate(); err != nil {
			return fmt.Errorf("metrics.%s.%w", s.field, err)
		}
	}
	if m.URL == "" {
		for _, f := range []struct{ name, value string }{{"bearerTokenFile", m.BearerTokenFile},
			{"basicAuth.username", m.BasicAuth.Username}, {"basicAuth.passwordFile", m.BasicAuth.PasswordFile},
			{"tls.caFile", m.TLS.CAFile}, {"tls.certFile", m.TLS.CertFile}, {"tls.keyFile", m.TLS.KeyFile},
			{"tls.serverName", m.TLS.ServerName}} {
			if f.value != "" {
				return fmt.Errorf("metrics.%s: set, but metrics.url is empty", f.name)
			}
		}
		if m.TLS.InsecureSkipVerify {
			return errors.New("metrics.tls.insecureSkipVerify: set, but metrics.url is empty")
		}
		return nil
	}
	u, err := url.Parse(m.URL)
	switch {
	case err != nil:
		return errors.New("metrics.url: not a URL") // the parser's error would repeat it, credentials and all
	case u.User != nil:
		return errors.New("metrics.url: holds credentials; put them in metrics.bearerTokenFile or metrics.basicAuth")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("metrics.url: scheme %q, want http or https", u.Scheme)
	case u.Host == "":
		return errors.New("metrics.url: no host")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("metrics.url: has a query or fragment; want the server's base URL")
	}
	if u.Scheme != "https" && m.TLS != (MetricsTLS{}) {
		return errors.New("metrics.tls: set, but metrics.url is not https://")
	}
	if _, err := m.TLS.ClientConfig(u.Scheme == "https"); err != nil {
		return err
	}
	b := &m.BasicAuth
	switch {
	case m.BearerTokenFile != "" && (b.Username != "" || b.PasswordFile != ""):
		return errors.New("metrics.bearerTokenFile, metrics.basicAuth: one or the other")
	case b.Username == "" && b.PasswordFile != "":
		return errors.New("metrics.basicAuth.username: required with metrics.basicAuth.passwordFile")
	case b.Username != "" && b.PasswordFile == "":
		return errors.New("metrics.basicAuth.passwordFile: required with metrics.basicAuth.username")
	case m.BearerTokenFile != "":
		return checkSecretFile("metrics.bearerTokenFile", m.BearerTokenFile)
	case b.PasswordFile != "":
		return checkSecretFile("metrics.basicAuth.passwordFile", b.PasswordFile)
	}
	return nil
}

// checkSecretFile checks that a secret's file can be read as package telemetry
// reads it for every request: a regular file of one line.
func checkSecretFile(field, path string) error {
	if _, err := telemetry.ReadSecretFile(path); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// ClientConfig returns the TLS configuration of connections to metrics.url, nil
// when it is not https (https false). It reads CAFile, and CertFile and KeyFile
// (again whenever they change); errors name the field.
func (t *MetricsTLS) ClientConfig(https bool) (*tls.Config, error) {
	if !https {
		return nil, nil
	}
	return clientTLS("metrics.tls", t.CAFile, t.CertFile, t.KeyFile, t.ServerName, t.InsecureSkipVerify)
}

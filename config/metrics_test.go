package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMetricsDefaults(t *testing.T) {
	m := Default().Metrics
	if m.URL != "" || m.Timeout != 2*time.Second || m.FailureThreshold != 3 || m.Cooldown != time.Minute {
		t.Errorf("Default().Metrics = %+v, want no URL, 2s, 3, 1m", m)
	}
	for _, s := range []struct {
		name   string
		series MetricSeries
		want   MetricSeries
	}{
		{"memory", m.Memory, MetricSeries{"container_memory_working_set_bytes", "namespace", "pod", "container", 1}},
		{"gpuMemory", m.GPUMemory, MetricSeries{"DCGM_FI_DEV_FB_USED", "namespace", "pod", "", 1 << 20}},
		{"ephemeralStorage", m.EphemeralStorage, MetricSeries{"container_fs_usage_bytes", "namespace", "pod", "container", 1}},
	} {
		if s.series != s.want {
			t.Errorf("metrics.%s = %+v, want %+v", s.name, s.series, s.want)
		}
	}
}

// TestMetricsPartialSeries: a section that sets some fields of a series keeps the
// defaults of the others.
func TestMetricsPartialSeries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "metrics:\n  url: http://prometheus:9090\n  gpuMemory: {podLabel: exported_pod, namespaceLabel: exported_namespace}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, env(map[string]string{"AUTOFIX_METRICS_URL": "http://thanos-query:9090/prom"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	g := c.Metrics.GPUMemory
	if g.Metric != "DCGM_FI_DEV_FB_USED" || g.PodLabel != "exported_pod" || g.UnitBytes != 1<<20 || c.Metrics.URL != "http://thanos-query:9090/prom" {
		t.Errorf("metrics = %+v, want the file's labels over the defaults, and the environment's URL", c.Metrics)
	}
}

func TestMetricsInvalid(t *testing.T) {
	dir := t.TempDir()
	write := fileWriter(t, dir)
	token := write("token", "hunter2\n")
	twoLines := write("two", "hunter2\nhunter3\n")
	empty := write("empty", "\n")
	tests := []struct{ name, yaml, want string }{
		{"credentials in the URL", "url: http://admin:hunter2@prometheus:9090", "metrics.url: holds credentials"},
		{"a scheme", "url: ftp://prometheus", `metrics.url: scheme "ftp"`},
		{"no host", "url: http://", "metrics.url: no host"},
		{"a query", "url: http://prometheus:9090/?x=1", "metrics.url: has a query"},
		{"not a URL", "url: \"http://prom etheus:x\"", "metrics.url: not a URL"},
		{"a token without a URL", "bearerTokenFile: " + token, "metrics.bearerTokenFile: set, but metrics.url is empty"},
		{"TLS without a URL", "tls: {insecureSkipVerify: true}", "metrics.tls.insecureSkipVerify: set, but metrics.url is empty"},
		{"TLS for http", "url: http://p:9090\ntls: {serverName: p}", "metrics.tls: set, but metrics.url is not https://"},
		{"a missing CA", "url: https://p:9090\ntls: {caFile: " + filepath.Join(dir, "nope") + "}", "metrics.tls.caFile:"},
		{"a certificate without a key", "url: https://p:9090\ntls: {certFile: " + token + "}", "metrics.tls.keyFile: required"},
		{"insecure and a CA", "url: https://p:9090\ntls: {insecureSkipVerify: true, serverName: p}", "metrics.tls.insecureSkipVerify: verifies nothing"},
		{"both kinds of auth", "url: http://p:9090\nbearerTokenFile: " + token + "\nbasicAuth: {username: u, passwordFile: " + token + "}",
			"metrics.bearerTokenFile, metrics.basicAuth: one or the other"},
		{"a user without a password", "url: http://p:9090\nbasicAuth: {username: u}", "metrics.basicAuth.passwordFile: required"},
		{"a password without a user", "url: http://p:9090\nbasicAuth: {passwordFile: " + token + "}", "metrics.basicAuth.username: required"},
		{"a missing token file", "url: http://p:9090\nbearerTokenFile: " + filepath.Join(dir, "nope"), "metrics.bearerTokenFile:"},
		{"an empty token file", "url: http://p:9090\nbearerTokenFile: " + empty, "is empty"},
		{"a token of two lines", "url: http://p:9090\nbearerTokenFile: " + twoLines, "more than one line"},
		{"an empty password file", "url: http://p:9090\nbasicAuth: {username: u, passwordFile: " + empty + "}", "metrics.basicAuth.passwordFile:"},
		{"a short timeout", "timeout: 10ms", "metrics.timeout:"},
		{"a long timeout", "timeout: 5m", "metrics.timeout:"},
		{"threshold", "failureThreshold: 0", "metrics.failureThreshold:"},
		{"cooldown", "cooldown: 10ms", "metrics.cooldown:"},
		{"a metric with a selector", "memory: {metric: 'm{a=\"b\"}'}", "metrics.memory.metric:"},
		{"a bad label", "gpuMemory: {podLabel: 'exported pod'}", "metrics.gpuMemory.podLabel:"},
		{"one label twice", "ephemeralStorage: {containerLabel: pod}", "metrics.ephemeralStorage.namespaceLabel, podLabel, containerLabel:"},
		{"no unit", "gpuMemory: {unitBytes: 0}", "metrics.gpuMemory.unitBytes:"},
		{"an unknown field", "password: hunter2", "field password not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write("c.yaml", "metrics:\n  "+strings.ReplaceAll(tt.yaml, "\n", "\n  ")+"\n")
			c, err := Load(path, env(nil))
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Load+Validate = %v, want an error containing %q, without the secret", err, tt.want)
			}
		})
	}
}

func TestMetricsTurnedOff(t *testing.T) {
	c := Default()
	c.Metrics.GPUMemory = MetricSeries{}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() with gpuMemory off = %v", err)
	}
}

// TestMetricsSecretFileThatIsAFIFO: a FIFO as the token file is refused, not read:
// reading it would hold the start until something writes to it.
func TestMetricsSecretFileThatIsAFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "token")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	c := Default()
	c.Metrics.URL, c.Metrics.BearerTokenFile = "http://prometheus:9090", fifo
	done := make(chan error, 1)
	go func() { done <- c.Validate() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "metrics.bearerTokenFile: ") || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Validate() = %v, want metrics.bearerTokenFile: ... not a regular file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Validate() still reading the FIFO after 5s")
	}
}

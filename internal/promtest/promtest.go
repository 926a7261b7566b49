// Package promtest starts a real Prometheus server for a test (Debian's `prometheus`
// package, 2.42 here), holding the series the test gives it as TSDB blocks built by
// `promtool tsdb create-blocks-from openmetrics`: no scraping, so what a query finds
// does not depend on when a scrape happened.
//
// The binaries are looked up in $AUTOFIX_PROMETHEUS_BIN, else on PATH. Without them
// a test skips, unless AUTOFIX_REQUIRE_PROMETHEUS=1 (as in CI, which installs the
// package), which makes their absence a failure.
package promtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/internal/testserver"
	"github.com/autofix/autofix/internal/testwait"
)

// Server is a Prometheus server a test started.
type Server = testserver.Server

// Binaries returns the paths of prometheus and promtool, or skips t (fails it under
// AUTOFIX_REQUIRE_PROMETHEUS=1) when they are not there.
func Binaries(t testing.TB) (prometheus, promtool string) {
	t.Helper()
	find := func(name string) string {
		if dir := os.Getenv("AUTOFIX_PROMETHEUS_BIN"); dir != "" {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err == nil { // #nosec G703 -- the test's own setting names the directory
				return p
			}
			return ""
		}
		p, err := exec.LookPath(name)
		if err != nil {
			return ""
		}
		return p
	}
	prometheus, promtool = find("prometheus"), find("promtool")
	if prometheus == "" || promtool == "" {
		msg := "no prometheus and promtool ($AUTOFIX_PROMETHEUS_BIN, or PATH; Debian: apt-get install prometheus)"
		if os.Getenv("AUTOFIX_REQUIRE_PROMETHEUS") == "1" {
			t.Fatalf("AUTOFIX_REQUIRE_PROMETHEUS=1 and %s", msg)
		}
		t.Skipf("%s; set AUTOFIX_REQUIRE_PROMETHEUS=1 to fail instead", msg)
	}
	return prometheus, promtool
}

// Start starts Prometheus on a free loopback port with the samples of openMetrics
// (an OpenMetrics text ending in "# EOF", timestamps in seconds) loaded, and waits
// until it is ready. It is stopped when the test ends.
func Start(t testwait.T, openMetrics string) *Server {
	t.Helper()
	prometheus, promtool := Binaries(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	input := filepath.Join(dir, "series.om")
	if err := os.WriteFile(input, []byte(openMetrics), 0o600); err != nil {
		t.Fatal(err)
	}
	// #nosec G204 -- the test's own binary and files
	if out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", input, data).CombinedOutput(); err != nil {
		t.Fatalf("promtool tsdb create-blocks-from openmetrics: %v\n%s", err, out)
	}
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte("global: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return testserver.Start(t, "prometheus", prometheus, func(addr string) []string {
		return []string{"--config.file=" + config, "--storage.tsdb.path=" + data, "--web.listen-address=" + addr, "--log.level=warn"}
	})
}

// Label is one label of a sample.
type Label struct{ Name, Value string }

// Sample is one OpenMetrics sample line: metric{labels} value timestamp, the label
// values escaped as OpenMetrics escapes them (backslash, double quote, newline).
// value is as OpenMetrics writes it ("1.5e9", "NaN", "+Inf").
func Sample(metric string, labels []Label, value string, at time.Time) string {
	var b strings.Builder
	b.WriteString(metric)
	b.WriteByte('{')
	for i, l := range labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Name)
		b.WriteString(`="`)
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(l.Value))
		b.WriteByte('"')
	}
	b.WriteString("} ")
	b.WriteString(value)
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(at.Unix(), 10))
	b.WriteByte('\n')
	return b.String()
}

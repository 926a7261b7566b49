// Package promtest starts a real Prometheus server for a test (Debian's `prometheus`
// package, 2.42 here) that scrapes the series the test gives it from an exporter the
// test serves. The samples carry their own timestamps (Prometheus keeps them), so what
// a query over a past range finds does not depend on when the scrape happened.
//
// Samples must be of the last hour or so (see Epoch): Prometheus appends a scrape to
// its in-memory head, which takes samples up to an hour older than its newest one,
// and compacts a head that spans more than three hours into a block on disk.
// Building blocks with `promtool tsdb create-blocks-from` instead needs 512 MiB of
// free disk per block for a moment (its chunk files are preallocated), which a CI
// machine short of space does not have.
//
// The binary is looked up in $AUTOFIX_PROMETHEUS_BIN, else on PATH. Without it a
// test skips, unless AUTOFIX_REQUIRE_PROMETHEUS=1 (as in CI, which installs the
// package), which makes its absence a failure.
package promtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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

// Binary returns the path of prometheus, or skips t (fails it under
// AUTOFIX_REQUIRE_PROMETHEUS=1) when it is not there.
func Binary(t testing.TB) string {
	t.Helper()
	path := ""
	if dir := os.Getenv("AUTOFIX_PROMETHEUS_BIN"); dir != "" {
		p := filepath.Join(dir, "prometheus")
		if _, err := os.Stat(p); err == nil { // #nosec G703 -- the test's own setting names the directory
			path = p
		}
	} else if p, err := exec.LookPath("prometheus"); err == nil {
		path = p
	}
	if path == "" {
		msg := "no prometheus ($AUTOFIX_PROMETHEUS_BIN, or PATH; Debian: apt-get install prometheus)"
		if os.Getenv("AUTOFIX_REQUIRE_PROMETHEUS") == "1" {
			t.Fatalf("AUTOFIX_REQUIRE_PROMETHEUS=1 and %s", msg)
		}
		t.Skipf("%s; set AUTOFIX_REQUIRE_PROMETHEUS=1 to fail instead", msg)
	}
	return path
}

// Epoch is a time for a test's samples to start at: an hour ago, to the minute.
// Samples from it to a few minutes after it are all within the range Prometheus
// accepts in one scrape.
func Epoch() time.Time { return time.Now().Add(-time.Hour).Truncate(time.Minute) }

// job is the scrape job's name, and the job label of series that have none.
const job = "promtest"

// Start starts Prometheus on a free loopback port, scraping the samples of
// openMetrics (an OpenMetrics text ending in "# EOF", timestamps in seconds, each
// series' samples in time order) from an exporter the test serves, and waits until
// the first scrape is in. The labels of the samples are kept as they are (a job
// label too); Prometheus adds instance. It is stopped when the test ends.
func Start(t testwait.T, openMetrics string) *Server {
	t.Helper()
	prometheus := Binary(t)
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
		_, _ = io.WriteString(w, openMetrics)
	}))
	t.Cleanup(exporter.Close)
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	// Every scrape after the first brings the same samples, which Prometheus drops as
	// out of order (a warning in its log, hence level=error); an interval this short
	// only makes the first scrape come soon.
	yml := fmt.Sprintf(`scrape_configs:
  - job_name: %s
    scrape_interval: 500ms
    scrape_timeout: 500ms
    honor_labels: true
    static_configs: [{targets: [%q]}]
`, job, strings.TrimPrefix(exporter.URL, "http://"))
	if err := os.WriteFile(config, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	s := testserver.Start(t, "prometheus", prometheus, func(addr string) []string {
		return []string{"--config.file=" + config, "--storage.tsdb.path=" + data, "--web.listen-address=" + addr, "--log.level=error"}
	})
	// up is appended in the same transaction as the scrape's samples: once a
	// successful scrape's up is there, so are they.
	query := s.URL + "/api/v1/query?query=" + url.QueryEscape(fmt.Sprintf(`up{job=%q} == 1`, job))
	testwait.Poll(t, "prometheus's first scrape", func() bool {
		resp, err := http.Get(query) // #nosec G107 -- the test's own server
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		var r struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&r) == nil && len(r.Data.Result) > 0
	})
	return s
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

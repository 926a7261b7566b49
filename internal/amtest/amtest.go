// Package amtest starts a real Alertmanager for a test (Debian's
// `prometheus-alertmanager` package, 0.25 here), alone (clustering off), on a
// free loopback port, with the configuration the test gives it, and a webhook
// receiver that records what Alertmanager notifies.
//
// The binary is $AUTOFIX_ALERTMANAGER_BIN, else prometheus-alertmanager (Debian's
// name) or alertmanager on PATH; amtool, $AUTOFIX_AMTOOL_BIN or on PATH. Without it a test skips, unless
// AUTOFIX_REQUIRE_ALERTMANAGER=1 (as in CI, which installs the package), which
// makes its absence a failure.
package amtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/autofix/autofix/internal/testserver"
	"github.com/autofix/autofix/internal/testwait"
)

// Binary returns the path of the Alertmanager binary, or skips t (fails it under
// AUTOFIX_REQUIRE_ALERTMANAGER=1) when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AUTOFIX_ALERTMANAGER_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil { // #nosec G703 -- the test's own setting names the file
			t.Fatalf("AUTOFIX_ALERTMANAGER_BIN: %v", err)
		}
		return p
	}
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Alertmanager ($AUTOFIX_ALERTMANAGER_BIN, or prometheus-alertmanager or alertmanager on PATH; Debian: apt-get install prometheus-alertmanager)"
	if os.Getenv("AUTOFIX_REQUIRE_ALERTMANAGER") == "1" {
		t.Fatalf("AUTOFIX_REQUIRE_ALERTMANAGER=1 and %s", msg)
	}
	t.Skipf("%s; set AUTOFIX_REQUIRE_ALERTMANAGER=1 to fail instead", msg)
	return ""
}

// Amtool returns the path of amtool (Debian's prometheus-alertmanager has it):
// $AUTOFIX_AMTOOL_BIN, else amtool on PATH; it skips or fails t as Binary does.
func Amtool(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AUTOFIX_AMTOOL_BIN"); p != "" {
		return p
	}
	p, err := exec.LookPath("amtool")
	if err == nil {
		return p
	}
	msg := "no amtool ($AUTOFIX_AMTOOL_BIN, or on PATH; Debian: apt-get install prometheus-alertmanager)"
	if os.Getenv("AUTOFIX_REQUIRE_ALERTMANAGER") == "1" {
		t.Fatalf("AUTOFIX_REQUIRE_ALERTMANAGER=1 and %s", msg)
	}
	t.Skipf("%s; set AUTOFIX_REQUIRE_ALERTMANAGER=1 to fail instead", msg)
	return ""
}

// Server is an Alertmanager a test started.
type Server = testserver.Server

// Start starts Alertmanager with the configuration config (YAML) and waits until
// it is ready. It is stopped when the test ends.
func Start(t testwait.T, config string) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	return testserver.Start(t, "alertmanager", bin, func(addr string) []string {
		return []string{"--config.file=" + file, "--storage.path=" + data, "--web.listen-address=" + addr,
			"--cluster.listen-address=", "--log.level=warn"}
	})
}

// Notification is what Alertmanager's webhook receiver posts (version 4).
type Notification struct {
	Receiver          string            `json:"receiver"`
	Status            string            `json:"status"` // firing or resolved
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a Notification.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
}

// Webhook is a webhook receiver: a test server that records the notifications
// Alertmanager posts to it.
type Webhook struct {
	// URL is where Alertmanager posts: the server's address.
	URL string

	mu       sync.Mutex
	received []Notification
	changed  testwait.Signal
}

// NewWebhook starts a webhook receiver; it is closed when the test ends.
func NewWebhook(t testing.TB) *Webhook {
	w := &Webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var n Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("webhook: a notification that does not decode: %v", err)
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.received = append(w.received, n)
		w.mu.Unlock()
		w.changed.Notify()
	}))
	t.Cleanup(srv.Close)
	w.URL = srv.URL
	return w
}

// WaitFor waits, until the test's deadline, for a notification that match accepts
// (among all received so far), and returns it.
func (w *Webhook) WaitFor(t testwait.T, what string, match func(Notification) bool) Notification {
	t.Helper()
	var found Notification
	testwait.For(t, what, &w.changed, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, n := range w.received {
			if match(n) {
				found = n
				return true
			}
		}
		return false
	})
	return found
}

// Received returns the notifications received so far.
func (w *Webhook) Received() []Notification {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Notification(nil), w.received...)
}

package service

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/internal/testwait"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/notify"
)

// TestReviewAlerts: serve with notify.alertmanager sends the demo's fixes that wait
// for review (its ml-prod namespace) as alerts linking to the review page, and
// resolves one once it is decided.
func TestReviewAlerts(t *testing.T) {
	var (
		mu       sync.Mutex
		received []posted
		changed  testwait.Signal
	)
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var alerts []notify.Alert
		if r.URL.Path != "/api/v2/alerts" || json.NewDecoder(r.Body).Decode(&alerts) != nil {
			t.Errorf("a post to %s that is not a list of alerts", r.URL.Path)
		}
		at := time.Now()
		mu.Lock()
		for _, a := range alerts {
			received = append(received, posted{a, at})
		}
		mu.Unlock()
		changed.Notify()
	}))
	defer am.Close()
	cfg := testConfig(t, "")
	cfg.HTTP.ExternalURL = "https://autofix.example"
	cfg.Notify.Alertmanager.URLs = []string{am.URL}
	cfg.Notify.Alertmanager.ResendInterval = time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := runService(t, cfg)
	// find returns the first alert received that want accepts, firing or resolved
	// when it arrived.
	find := func(want func(a notify.Alert, resolved bool) bool) (notify.Alert, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range received {
			if want(p.alert, !p.alert.EndsAt.After(p.at)) {
				return p.alert, true
			}
		}
		return notify.Alert{}, false
	}
	var firing notify.Alert
	testwait.For(t, "an alert of a demo review", &changed, func() bool {
		var ok bool
		firing, ok = find(func(a notify.Alert, resolved bool) bool {
			return a.Labels["namespace"] == demoProdNamespace && !resolved
		})
		return ok
	})
	id := firing.Labels["remediation"]
	if firing.Labels["alertname"] != notify.AlertName || firing.Labels["severity"] != notify.Warning ||
		firing.Annotations["review_url"] != "https://autofix.example/ui/remediations/"+id {
		t.Errorf("alert %v %v: want %s, warning, a link to the review page", firing.Labels, firing.Annotations, notify.AlertName)
	}
	if r, err := s.store.Get(context.Background(), id); err != nil || r.State != ledger.PendingReview {
		t.Fatalf("the alert's remediation %q: %v, %v; want it pending_review", id, r.State, err)
	}
	if err := s.store.Reject(context.Background(), id, "alice", "not now", time.Now()); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the rejected review's alert resolved", &changed, func() bool {
		_, ok := find(func(a notify.Alert, resolved bool) bool {
			return a.Labels["remediation"] == id && a.Labels["severity"] == notify.Warning && resolved
		})
		return ok
	})
}

// posted is an alert as the test's Alertmanager received it, and when.
type posted struct {
	alert notify.Alert
	at    time.Time
}

// TestReviewWebhooks: serve with notify.webhooks tells a receiver of a demo fix that
// waits for review, signed, and of its end once it is rejected; another receiver
// that never answers holds up neither the decision nor the first one's messages.
func TestReviewWebhooks(t *testing.T) {
	var (
		mu       sync.Mutex
		messages []notify.Message
		changed  testwait.Signal
	)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("k3y-of-the-test-receiver\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m notify.Message
		if err := notify.Verify([]byte("k3y-of-the-test-receiver"), r.Header.Get(notify.HeaderTimestamp), r.Header.Get(notify.HeaderSignature), body,
			time.Now(), 5*time.Minute); err != nil || json.Unmarshal(body, &m) != nil {
			t.Errorf("a post that does not verify (%v) or is not a message: %s", err, body)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		messages = append(messages, m)
		mu.Unlock()
		changed.Notify()
	}))
	defer rcv.Close()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer hang.Close()
	defer close(release)

	cfg := testConfig(t, "")
	cfg.HTTP.ExternalURL = "https://autofix.example"
	cfg.Notify.Webhooks = []config.Webhook{{Name: "hang", URL: hang.URL, Format: notify.FormatSlack, Timeout: time.Minute},
		{Name: "oncall", URL: rcv.URL, SecretFile: secret}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := runService(t, cfg)
	find := func(typ, id string) (notify.Message, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range messages {
			if m.Type == typ && (id == "" || m.Remediation.ID == id) && m.Remediation.Namespace == demoProdNamespace {
				return m, true
			}
		}
		return notify.Message{}, false
	}
	var pending notify.Message
	testwait.For(t, "a message of a demo review", &changed, func() bool {
		var ok bool
		pending, ok = find("review.pending", "")
		return ok
	})
	id := pending.Remediation.ID
	if pending.Remediation.ReviewURL != "https://autofix.example/ui/remediations/"+id || pending.Remediation.State != "pending_review" {
		t.Errorf("the pending message = %+v, want a link to the review page", pending.Remediation)
	}
	if err := s.store.Reject(context.Background(), id, "alice", "not now", time.Now()); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the rejected review's end", &changed, func() bool {
		m, ok := find("review.ended", id)
		return ok && m.Remediation.State == "rejected" && m.Remediation.DecidedBy == "alice"
	})
}

// runService runs a service of cfg until the test ends.
func runService(t *testing.T, cfg *config.Config) *Service {
	t.Helper()
	s, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-ran; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return s
}

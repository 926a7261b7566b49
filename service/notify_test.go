package service

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

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
	s, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- s.Run(context.Background()) }()
	defer func() {
		s.Stop()
		if err := <-ran; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
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

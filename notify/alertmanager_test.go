package notify

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/amtest"
	"github.com/autofix/autofix/internal/testwait"
	"github.com/autofix/autofix/ledger"
)

// amConfig routes autofix's alerts as docs/api.md shows: grouped by alertname and
// namespace, critical ones to a receiver of their own; each receiver is the test's
// webhook, sent the resolutions too.
const amConfig = `route:
  receiver: reviews
  group_by: [alertname, namespace]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 24h
  routes:
    - receiver: reviews-critical
      matchers: ['alertname="AutofixFixAwaitsReview"', 'severity="critical"']
receivers:
  - name: reviews
    webhook_configs: [{url: '%[1]s/reviews', send_resolved: true}]
  - name: reviews-critical
    webhook_configs: [{url: '%[1]s/critical', send_resolved: true}]
`

// alertIn returns the alert of remediation id with severity sev in n, if any.
func alertIn(n amtest.Notification, id, sev string) (amtest.WebhookAlert, bool) {
	for _, a := range n.Alerts {
		if a.Labels["remediation"] == id && a.Labels["severity"] == sev {
			return a, true
		}
	}
	return amtest.WebhookAlert{}, false
}

// TestWithAlertmanager runs the notifier against Debian's Alertmanager, whose
// webhook receiver is this test's server, over a real SQLite ledger: two reviews
// of one namespace arrive as one group with the labels a route matches on; the
// approved one is resolved; the other, escalated, goes to the critical route
// while its warning is resolved; rejected, it is resolved there too.
func TestWithAlertmanager(t *testing.T) {
	hook := amtest.NewWebhook(t)
	am := amtest.Start(t, fmt.Sprintf(amConfig, hook.URL))
	ctx := testwait.Context(t)
	store, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	for _, id := range []string{"ev-1", "ev-2"} {
		r := waiting(id, "ml", time.Now())
		if _, err := store.Record(ctx, []ledger.Entry{{EventID: id, Event: r.Event, ChainID: "ml/" + r.JobName,
			Recommendation: r.Recommendation, State: ledger.PendingReview, Reason: "review: prod", Actor: "policy"}}); err != nil {
			t.Fatal(err)
		}
	}
	o := testOptions()
	o.URLs, o.EscalateAfter = []string{am.URL}, time.Hour
	n, err := New(o, store)
	if err != nil {
		t.Fatal(err)
	}
	round := func() {
		t.Helper()
		if err := n.round(ctx, time.Now()); err != nil {
			t.Fatalf("round: %v", err)
		}
	}

	round()
	got := hook.WaitFor(t, "both reviews firing in one group", func(m amtest.Notification) bool {
		a1, ok1 := alertIn(m, "ev-1", Warning)
		a2, ok2 := alertIn(m, "ev-2", Warning)
		return m.Receiver == "reviews" && ok1 && ok2 && a1.Status == "firing" && a2.Status == "firing"
	})
	if want := map[string]string{"alertname": AlertName, "namespace": "ml"}; fmt.Sprint(got.GroupLabels) != fmt.Sprint(want) {
		t.Errorf("group labels = %v, want %v", got.GroupLabels, want)
	}
	a1, _ := alertIn(got, "ev-1", Warning)
	wantLabels := map[string]string{"alertname": AlertName, "severity": Warning, "remediation": "ev-1", "namespace": "ml",
		"job_name": "train-ev-1", "template": "train", "category": string(failure.OOMMemory), "team": "vision", "cluster": "prod-eu"}
	if fmt.Sprint(a1.Labels) != fmt.Sprint(wantLabels) {
		t.Errorf("ev-1's labels = %v, want %v", a1.Labels, wantLabels)
	}
	if link := "https://autofix.example:8443/ui/remediations/ev-1"; a1.Annotations["review_url"] != link || a1.GeneratorURL != link ||
		a1.Annotations["evidence"] != "torch.cuda.OutOfMemoryError: CUDA out of memory" {
		t.Errorf("ev-1's annotations %v, generatorURL %q: want the review link and the evidence line", a1.Annotations, a1.GeneratorURL)
	}

	approvedAt := time.Now()
	if err := store.Approve(ctx, "ev-1", ledger.Attempt{Number: 2, JobName: "train-ev-1-af2"}, "alice", "", approvedAt); err != nil {
		t.Fatal(err)
	}
	round()
	got = hook.WaitFor(t, "ev-1 resolved, ev-2 still firing", func(m amtest.Notification) bool {
		a1, ok1 := alertIn(m, "ev-1", Warning)
		a2, ok2 := alertIn(m, "ev-2", Warning)
		return m.Receiver == "reviews" && ok1 && ok2 && a1.Status == "resolved" && a2.Status == "firing"
	})
	// Compared to the millisecond: the precision Alertmanager may keep of a time.
	if a1, _ := alertIn(got, "ev-1", Warning); a1.EndsAt.Sub(approvedAt).Abs() > time.Millisecond {
		t.Errorf("ev-1 resolved at %v, want when it was approved, %v", a1.EndsAt, approvedAt)
	}

	n.o.EscalateAfter = time.Nanosecond // ev-2 has now waited longer than that
	round()
	hook.WaitFor(t, "ev-2 critical, on the critical route", func(m amtest.Notification) bool {
		a, ok := alertIn(m, "ev-2", Critical)
		return m.Receiver == "reviews-critical" && ok && a.Status == "firing"
	})
	hook.WaitFor(t, "ev-2's warning resolved", func(m amtest.Notification) bool {
		a, ok := alertIn(m, "ev-2", Warning)
		return m.Receiver == "reviews" && ok && a.Status == "resolved"
	})

	if err := store.Reject(ctx, "ev-2", "bob", "the loader leaks", time.Now()); err != nil {
		t.Fatal(err)
	}
	round()
	hook.WaitFor(t, "ev-2's critical alert resolved", func(m amtest.Notification) bool {
		a, ok := alertIn(m, "ev-2", Critical)
		return m.Receiver == "reviews-critical" && m.Status == "resolved" && ok && a.Status == "resolved"
	})
}

// TestDocsRouteExample: the Alertmanager route docs/api.md shows is one
// Alertmanager takes (amtool check-config), and it routes autofix's alerts by the
// labels they carry.
func TestDocsRouteExample(t *testing.T) {
	amtool := amtest.Amtool(t)
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "**A route.**")
	_, rest, ok2 := strings.Cut(rest, "```yaml\n")
	example, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal(`docs/api.md: no yaml block after "**A route.**"`)
	}
	file := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := os.WriteFile(file, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	// #nosec G204 -- the test's own binary and file
	if out, err := exec.Command(amtool, "check-config", file).CombinedOutput(); err != nil {
		t.Fatalf("amtool check-config of docs/api.md's route: %v\n%s", err, out)
	}
	o := testOptions()
	for _, tt := range []struct {
		sev, team, want string
	}{
		{Warning, "nlp", "ml-oncall"},
		{Critical, "nlp", "ml-oncall-pager"},
		{Warning, "vision", "vision"},
		{Critical, "vision", "ml-oncall-pager,vision"},
	} {
		r := waiting("ev-1", "ml", t0)
		r.Event.Job.Labels["example.com/team"] = tt.team
		o.EscalateAfter = time.Hour
		if tt.sev == Critical {
			o.EscalateAfter = time.Nanosecond
		}
		a := o.firing(&r, t0.Add(time.Minute))
		args := []string{"config", "routes", "test", "--config.file=" + file}
		for k, v := range a.Labels {
			args = append(args, k+"="+v)
		}
		// #nosec G204 -- the test's own binary and file
		out, err := exec.Command(amtool, args...).Output() // stdout: the receivers
		if got := strings.TrimSpace(string(out)); err != nil || got != tt.want {
			t.Errorf("a %s alert of team %s is routed to %q (%v), want %q", tt.sev, tt.team, got, err, tt.want)
		}
	}
}

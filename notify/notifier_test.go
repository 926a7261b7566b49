package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/autofix/autofix/ledger"
)

// fakeLedger holds remediations by id; failGet and failPending make its reads fail.
type fakeLedger struct {
	mu          sync.Mutex
	rems        map[string]ledger.Remediation
	failGet     error
	failPending error
}

func newFakeLedger(rs ...ledger.Remediation) *fakeLedger {
	l := &fakeLedger{rems: map[string]ledger.Remediation{}}
	for _, r := range rs {
		l.rems[r.EventID] = r
	}
	return l
}

func (l *fakeLedger) PendingReviews(_ context.Context, limit int) ([]ledger.Remediation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failPending != nil {
		return nil, l.failPending
	}
	var out []ledger.Remediation
	for _, r := range l.rems {
		if r.State == ledger.PendingReview {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b ledger.Remediation) int {
		if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
			return c
		}
		return strings.Compare(a.EventID, b.EventID)
	})
	return out[:min(limit, len(out))], nil
}

func (l *fakeLedger) Get(_ context.Context, id string) (ledger.Remediation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failGet != nil {
		return ledger.Remediation{}, l.failGet
	}
	r, ok := l.rems[id]
	if !ok {
		return ledger.Remediation{}, fmt.Errorf("get %s: %w", id, ledger.ErrNotFound)
	}
	return r, nil
}

// decide moves id to state at, with its audit row, as the ledger does.
func (l *fakeLedger) decide(id string, state ledger.State, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rems[id]
	r.Audit = append(r.Audit, ledger.AuditEntry{At: at, Actor: "alice", Action: "move", From: r.State, To: state})
	r.State, r.UpdatedAt = state, at
	l.rems[id] = r
}

func (l *fakeLedger) put(r ledger.Remediation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rems[r.EventID] = r
}

func (l *fakeLedger) remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.rems, id)
}

// fakeAlertmanager records the posts it takes; status, when set, is its answer.
type fakeAlertmanager struct {
	*httptest.Server
	mu     sync.Mutex
	posts  []post
	status int
}

type post struct {
	path   string
	header http.Header
	alerts []Alert
}

func newFakeAlertmanager(t *testing.T) *fakeAlertmanager {
	am := &fakeAlertmanager{}
	am.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var alerts []Alert
		if err := json.NewDecoder(r.Body).Decode(&alerts); err != nil || r.Method != http.MethodPost ||
			r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("a post of %s %s, %s: %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err)
		}
		am.mu.Lock()
		defer am.mu.Unlock()
		am.posts = append(am.posts, post{path: r.URL.Path, header: r.Header.Clone(), alerts: alerts})
		if am.status != 0 {
			http.Error(w, `"the alerts were refused"`, am.status)
		}
	}))
	t.Cleanup(am.Close)
	return am
}

// take returns the posts since the last take.
func (am *fakeAlertmanager) take() []post {
	am.mu.Lock()
	defer am.mu.Unlock()
	p := am.posts
	am.posts = nil
	return p
}

// states sums up posts' alerts as "remediation/severity firing|resolved@endsAt"
// at now, in the order sent.
func states(posts []post, now time.Time) []string {
	var out []string
	for _, p := range posts {
		for _, a := range p.alerts {
			st := "firing"
			if !a.EndsAt.After(now) {
				st = "resolved@" + a.EndsAt.Sub(t0).String()
			}
			out = append(out, a.Labels["remediation"]+"/"+a.Labels["severity"]+" "+st)
		}
	}
	return out
}

func newTestNotifier(t *testing.T, l Ledger, am *fakeAlertmanager, edit func(*Options)) *Notifier {
	t.Helper()
	o := testOptions()
	o.URLs = []string{am.URL}
	if edit != nil {
		edit(&o)
	}
	n, err := New(o, l)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// step is one round of a scenario: what changes before it, and what it sends.
type step struct {
	at     time.Duration // since t0
	before func(*fakeLedger)
	want   []string // states of the alerts sent
}

func runSteps(t *testing.T, n *Notifier, l *fakeLedger, am *fakeAlertmanager, steps []step) {
	t.Helper()
	for _, s := range steps {
		if s.before != nil {
			s.before(l)
		}
		now := t0.Add(s.at)
		if err := n.round(context.Background(), now); err != nil {
			t.Fatalf("round at +%v: %v", s.at, err)
		}
		if got := states(am.take(), now); !slices.Equal(got, s.want) {
			t.Errorf("round at +%v sent %q, want %q", s.at, got, s.want)
		}
	}
}

// TestRoundsFireThenResolve: a review's alert fires every round while it waits;
// once decided it is resolved as of the decision, and the resolution is sent
// again until the firing version would have expired (3 intervals after it was
// last sent), then no more.
func TestRoundsFireThenResolve(t *testing.T) {
	l := newFakeLedger(waiting("ev-1", "ml", t0), waiting("ev-2", "ml", t0.Add(time.Minute)))
	am := newFakeAlertmanager(t)
	n := newTestNotifier(t, l, am, nil)
	runSteps(t, n, l, am, []step{
		{at: 2 * time.Minute, want: []string{"ev-1/warning firing", "ev-2/warning firing"}},
		// Approved, then submitted before the round: resolved as of the approval.
		{at: 3 * time.Minute, before: func(l *fakeLedger) {
			l.decide("ev-1", ledger.Approved, t0.Add(150*time.Second))
			l.decide("ev-1", ledger.Submitted, t0.Add(170*time.Second))
		}, want: []string{"ev-2/warning firing", "ev-1/warning resolved@2m30s"}},
		{at: 4 * time.Minute, before: func(l *fakeLedger) { l.decide("ev-2", ledger.Rejected, t0.Add(230*time.Second)) },
			want: []string{"ev-1/warning resolved@2m30s", "ev-2/warning resolved@3m50s"}},
		// ev-1 last fired at +2m: that alert ended at +5m; ev-2's at +6m.
		{at: 5 * time.Minute, want: []string{"ev-2/warning resolved@3m50s"}},
		{at: 6 * time.Minute, want: nil},
	})
	if len(n.sent) != 0 {
		t.Errorf("%d alerts remembered after every review ended and expired, want 0", len(n.sent))
	}
}

// TestEscalation: at EscalateAfter the critical alert fires and the warning one,
// another alert to Alertmanager (its labels differ), is resolved.
func TestEscalation(t *testing.T) {
	l := newFakeLedger(waiting("ev-1", "ml", t0))
	am := newFakeAlertmanager(t)
	n := newTestNotifier(t, l, am, nil)
	runSteps(t, n, l, am, []step{
		{at: 29 * time.Minute, want: []string{"ev-1/warning firing"}},
		{at: 30 * time.Minute, want: []string{"ev-1/critical firing", "ev-1/warning resolved@30m0s"}},
		{at: 31 * time.Minute, want: []string{"ev-1/critical firing", "ev-1/warning resolved@30m0s"}},
		{at: 32 * time.Minute, want: []string{"ev-1/critical firing"}},
		{at: 33 * time.Minute, before: func(l *fakeLedger) { l.decide("ev-1", ledger.Approved, t0.Add(32*time.Minute+time.Second)) },
			want: []string{"ev-1/critical resolved@32m1s"}},
	})
}

// TestReviewGoneOrBeyondTheBound: a review gone from the ledger is resolved now;
// one that still waits but no longer fits in MaxAlerts is not resolved (it is not
// over), only no longer sent.
func TestReviewGoneOrBeyondTheBound(t *testing.T) {
	l := newFakeLedger(waiting("ev-1", "ml", t0.Add(time.Minute)), waiting("ev-2", "ml", t0.Add(2*time.Minute)))
	am := newFakeAlertmanager(t)
	n := newTestNotifier(t, l, am, func(o *Options) { o.MaxAlerts = 2 })
	runSteps(t, n, l, am, []step{
		{at: 3 * time.Minute, want: []string{"ev-1/warning firing", "ev-2/warning firing"}},
		{at: 4 * time.Minute, before: func(l *fakeLedger) { l.put(waiting("ev-0", "ml", t0)) }, // waited longer: it comes first
			want: []string{"ev-0/warning firing", "ev-1/warning firing"}},
		{at: 5 * time.Minute, before: func(l *fakeLedger) { l.remove("ev-1") },
			want: []string{"ev-0/warning firing", "ev-2/warning firing", "ev-1/warning resolved@5m0s"}},
	})
}

// TestLedgerErrors: a round that cannot read the reviews sends nothing (the alerts
// stay firing until their EndsAt); one that cannot tell whether a review ended
// sends the rest and asks again the next round.
func TestLedgerErrors(t *testing.T) {
	l := newFakeLedger(waiting("ev-1", "ml", t0), waiting("ev-2", "ml", t0.Add(time.Minute)))
	am := newFakeAlertmanager(t)
	n := newTestNotifier(t, l, am, nil)
	runSteps(t, n, l, am, []step{{at: 2 * time.Minute, want: []string{"ev-1/warning firing", "ev-2/warning firing"}}})

	l.failPending = errors.New("database is locked")
	if err := n.round(context.Background(), t0.Add(150*time.Second)); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("round with the reviews unreadable = %v, want the ledger's error", err)
	}
	if p := am.take(); len(p) != 0 {
		t.Errorf("%d posts with the reviews unreadable, want none", len(p))
	}
	l.failPending = nil
	l.decide("ev-1", ledger.Approved, t0.Add(160*time.Second))
	l.failGet = errors.New("connection reset")
	runSteps(t, n, l, am, []step{{at: 3 * time.Minute, want: []string{"ev-2/warning firing"}}})
	l.failGet = nil
	runSteps(t, n, l, am, []step{{at: 4 * time.Minute, want: []string{"ev-2/warning firing", "ev-1/warning resolved@2m40s"}}})
}

// TestFailedPostsAreCountedAndRetried: a refused post is an error of the round and
// a metric; the next round sends the same alerts again, the resolution included.
func TestFailedPostsAreCountedAndRetried(t *testing.T) {
	l := newFakeLedger(waiting("ev-1", "ml", t0))
	am := newFakeAlertmanager(t)
	n := newTestNotifier(t, l, am, nil)
	runSteps(t, n, l, am, []step{{at: time.Minute, want: []string{"ev-1/warning firing"}}})
	am.status = http.StatusInternalServerError
	l.decide("ev-1", ledger.Rejected, t0.Add(90*time.Second))
	err := n.round(context.Background(), t0.Add(2*time.Minute))
	var pe *PostError
	if !errors.As(err, &pe) || pe.Result != ResultFailed || pe.Status != http.StatusInternalServerError {
		t.Errorf("round against a failing Alertmanager = %v, want a PostError, failed, 500", err)
	}
	am.take()
	am.status = 0
	runSteps(t, n, l, am, []step{{at: 3 * time.Minute, want: []string{"ev-1/warning resolved@1m30s"}}})
	for _, c := range []struct {
		result string
		want   float64
	}{{ResultOK, 2}, {ResultFailed, 1}} {
		if got := counter(t, n, "autofix_alertmanager_posts_total", "result", c.result); got != c.want {
			t.Errorf("posts{result=%q} = %g, want %g", c.result, got, c.want)
		}
	}
	if got := counter(t, n, "autofix_alertmanager_alerts_total", "state", "resolved"); got != 1 {
		t.Errorf("alerts{state=resolved} = %g, want 1 (the failed post's does not count)", got)
	}
}

func TestNewOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no URL", func(o *Options) { o.URLs = nil }, "Options.URLs: required"},
		{"credentials in a URL", func(o *Options) { o.URLs = []string{"http://a:9093", "http://u:hunter2@b:9093"} },
			"Options.URLs[1]: holds credentials"},
		{"no external URL", func(o *Options) { o.ExternalURL = "" }, "Options.ExternalURL: scheme"},
		{"a query", func(o *Options) { o.ExternalURL = "https://autofix/?x" }, "Options.ExternalURL: has a query"},
		{"a reserved label", func(o *Options) { o.Labels = map[string]string{"severity": "page"} }, "Options.Labels: \"severity\""},
		{"both auths", func(o *Options) { o.BearerTokenFile, o.BasicAuthUsername, o.BasicAuthPasswordFile = "t", "u", "p" },
			"one or the other"},
		{"a user alone", func(o *Options) { o.BasicAuthUsername = "u" }, "both or neither"},
		{"negative", func(o *Options) { o.EscalateAfter = -time.Minute }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			tt.edit(&o)
			_, err := New(o, newFakeLedger())
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("New() = %v, want an error containing %q, without the secret", err, tt.want)
			}
		})
	}
	n, err := New(Options{URLs: []string{"http://am:9093"}, ExternalURL: "http://autofix"}, newFakeLedger())
	if err != nil {
		t.Fatal(err)
	}
	if n.o.ResendInterval != DefaultResendInterval || n.o.MaxAlerts != DefaultMaxAlerts || n.o.Timeout != DefaultTimeout ||
		n.o.EscalateAfter != 0 {
		t.Errorf("defaults = %v, %d, %v, %v; want 1m, 200, 10s, never", n.o.ResendInterval, n.o.MaxAlerts, n.o.Timeout, n.o.EscalateAfter)
	}
}

// counter is the value of the counter name{label=value} of n, a notifier or webhooks.
func counter(t *testing.T, n prometheus.Collector, name, label, value string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(n); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == name && l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestAnAlertmanagerThatDoesNotAnswerHoldsUpNoRound: one member of the cluster
// that takes every post but never answers costs a round at most two resend
// intervals, whatever the timeout and the number of batches: the round after
// comes in time for the alerts at the members that do answer not to lapse
// (they end three intervals after they were sent), and those get every alert.
func TestAnAlertmanagerThatDoesNotAnswerHoldsUpNoRound(t *testing.T) {
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // read to its end, the server sees the client hang up
		<-r.Context().Done()
	}))
	defer hung.Close()
	am := newFakeAlertmanager(t)
	var rs []ledger.Remediation
	for i := range 2*maxBatch + 50 {
		rs = append(rs, waiting(fmt.Sprintf("ev-%03d", i), "ml", t0))
	}
	l := newFakeLedger(rs...)
	n := newTestNotifier(t, l, am, func(o *Options) {
		o.URLs = append(o.URLs, hung.URL)
		o.MaxAlerts, o.ResendInterval, o.Timeout = len(rs), 200*time.Millisecond, 3*time.Second
	})
	start := time.Now()
	err := n.round(context.Background(), t0.Add(time.Minute))
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("a round with a member that does not answer took %v, want at most 2 resend intervals (400ms)", took.Round(time.Millisecond))
	}
	if resultOf(err) != ResultUnreachable {
		t.Errorf("round = %v, want the silent member unreachable", err)
	}
	if got := len(states(am.take(), t0.Add(time.Minute))); got != len(rs) {
		t.Errorf("the member that answers got %d alerts, want all %d", got, len(rs))
	}
}

// TestExpiredAlertForgottenWhenTheLedgerFails: an alert whose review cannot be
// read is asked about again each round only while it still fires; once its
// firing copy has ended on its own there is nothing to resolve, and it is
// forgotten rather than asked about, and remembered, for ever.
func TestExpiredAlertForgottenWhenTheLedgerFails(t *testing.T) {
	l := newFakeLedger(waiting("ev-1", "ml", t0))
	am := newFakeAlertmanager(t)
	n := newTestNotifier(t, l, am, nil)
	runSteps(t, n, l, am, []step{{at: time.Minute, want: []string{"ev-1/warning firing"}}})
	l.decide("ev-1", ledger.Approved, t0.Add(90*time.Second))
	l.failGet = errors.New("no such table: audit")
	for _, at := range []time.Duration{2 * time.Minute, 3 * time.Minute} {
		if err := n.round(context.Background(), t0.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	if len(n.sent) != 1 {
		t.Fatalf("%d alerts remembered while ev-1's still fires, want 1 (to resolve it)", len(n.sent))
	}
	if err := n.round(context.Background(), t0.Add(4*time.Minute)); err != nil { // ev-1's copy ended at +4m
		t.Fatal(err)
	}
	if len(n.sent) != 0 {
		t.Errorf("%d alerts remembered after ev-1's ended on its own, want 0", len(n.sent))
	}
}

package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autofix/autofix/internal/testwait"
	"github.com/autofix/autofix/ledger"
)

const hookSecret = "s3cret-key-for-tests"

// receiver is a webhook receiver that verifies what it gets as the docs tell
// receivers to, and answers with the statuses queued in answers (200 after them).
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	posts   []hookPost
	answers []int
	header  map[int]http.Header // added to the answers of a status
	changed testwait.Signal
}

type hookPost struct {
	header   http.Header
	body     []byte
	verified error
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	t.Helper()
	r := &receiver{answers: answers, header: map[int]http.Header{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		p := hookPost{header: req.Header.Clone(), body: body,
			verified: Verify([]byte(hookSecret), req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature), body, time.Now(), time.Hour*24*365*10)}
		r.posts = append(r.posts, p)
		status := http.StatusOK
		if len(r.answers) > 0 {
			status, r.answers = r.answers[0], r.answers[1:]
		}
		r.mu.Unlock()
		r.mu.Lock()
		for k, v := range r.header[status] {
			w.Header()[k] = v
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		r.changed.Notify()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() []hookPost {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookPost(nil), r.posts...)
}

// types are the types of the messages received, in order.
func (r *receiver) types(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range r.messages(t) {
		out = append(out, m.Type)
	}
	return out
}

// urlFileHooks returns webhooks of one Slack webhook, chat, whose URL is in a file
// (a secret), tried once, and the buffer of their log.
func urlFileHooks(t *testing.T, store WebhookLedger, url string) (*Webhooks, *bytes.Buffer) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "url")
	if err := os.WriteFile(file, []byte(url+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	w, err := NewWebhooks([]WebhookOptions{{Name: "chat", URLFile: file, Format: FormatSlack, MaxAttempts: 1,
		ExternalURL: "https://autofix.example/"}}, store, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return w, &logs
}

func (r *receiver) messages(t *testing.T) []Message {
	t.Helper()
	var out []Message
	for _, p := range r.got() {
		var m Message
		if err := json.Unmarshal(p.body, &m); err != nil {
			t.Fatalf("a post's body %q: %v", p.body, err)
		}
		out = append(out, m)
	}
	return out
}

func secretFile(t *testing.T, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// hookLedger is a real SQLite ledger holding the pending reviews of ids, since since.
func hookLedger(t *testing.T, since time.Time, ids ...string) *ledger.Store {
	t.Helper()
	ctx := testwait.Context(t)
	store, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	for _, id := range ids {
		r := waiting(id, "ml", since)
		r.Event.Failure.LogTail = "loading\nexport HF_TOKEN=hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345\nCUDA out of memory"
		r.Recommendation.Classification.Evidence = []string{"Authorization: Bearer abcdefghijklmnop0123 refused; CUDA out of memory"}
		if _, err := store.Record(ctx, []ledger.Entry{{EventID: id, Event: r.Event, ChainID: "ml/" + r.JobName, ReceivedAt: since,
			Recommendation: r.Recommendation, State: ledger.PendingReview, Reason: "review: prod", Actor: "policy"}}); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

func hookOptions(t *testing.T, url string) WebhookOptions {
	return WebhookOptions{Name: "oncall", URL: url, SecretFile: secretFile(t, hookSecret), EscalateAfter: 30 * time.Minute,
		ExternalURL: "https://autofix.example:8443/", TeamLabel: "example.com/team"}
}

func newHooks(t *testing.T, store WebhookLedger, opts ...WebhookOptions) *Webhooks {
	t.Helper()
	w, err := NewWebhooks(opts, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func deliveries(t *testing.T, store *ledger.Store, id string) map[string]ledger.Delivery {
	t.Helper()
	ds, err := store.Deliveries(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]ledger.Delivery{}
	for _, d := range ds {
		out[d.Webhook+"/"+string(d.Kind)] = d
	}
	return out
}

// TestWebhookTellsOfAReview: a review's beginning, escalation and end each reach
// the receiver once, signed, with what on-call needs and no secret of the job's.
func TestWebhookTellsOfAReview(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	store := hookLedger(t, since, "ev-1")
	rcv := newReceiver(t)
	w := newHooks(t, store, hookOptions(t, rcv.URL))
	h := w.hooks[0]
	now := since.Add(time.Minute)

	w.round(ctx, h, now)
	w.round(ctx, h, now.Add(time.Second)) // nothing new: nothing sent again
	msgs := rcv.messages(t)
	if len(msgs) != 1 || msgs[0].Type != "review.pending" {
		t.Fatalf("messages after two rounds = %+v, want one review.pending", msgs)
	}
	m := msgs[0]
	want := ReviewSummary{ID: "ev-1", Namespace: "ml", Job: "train-ev-1", Template: "train", Category: "oom_memory", Team: "vision",
		State: "pending_review", Severity: Warning, PendingSince: since.UTC(),
		Summary: "A fix for job ml/train-ev-1 (oom_memory) awaits review",
		Proposal: "autofix proposes a retry: memory 16Gi -> 27Gi (P(success) 0.93, 1.7x the failed run's cost). Waiting for review since " +
			since.UTC().Format(time.RFC3339) + ". Open the review link to approve or reject it.",
		Evidence: "Authorization: Bearer [redacted] refused; CUDA out of memory", ReviewURL: "https://autofix.example:8443/ui/remediations/ev-1"}
	if m.Version != 1 || m.Delivery != DeliveryID("oncall", "ev-1", ledger.DeliveryPending) || !m.Time.Equal(since) ||
		m.Remediation != want {
		t.Errorf("the pending message = %+v\nwant remediation %+v", m, want)
	}
	p := rcv.got()[0]
	if p.verified != nil || p.header.Get(HeaderDelivery) != m.Delivery || p.header.Get(HeaderEvent) != "review.pending" ||
		p.header.Get("Content-Type") != "application/json" {
		t.Errorf("the post's headers %v: verified %v; want a valid signature, the delivery id and the type", p.header, p.verified)
	}
	for _, secret := range []string{"hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345", "abcdefghijklmnop0123", hookSecret, "loading"} {
		if bytes.Contains(p.body, []byte(secret)) || strings.Contains(strings.Join(p.header.Values(HeaderSignature), ""), secret) {
			t.Errorf("the message holds %q: %s", secret, p.body)
		}
	}

	w.round(ctx, h, since.Add(31*time.Minute))
	w.round(ctx, h, since.Add(32*time.Minute))
	if msgs = rcv.messages(t); len(msgs) != 2 || msgs[1].Type != "review.escalated" || msgs[1].Remediation.Severity != Critical ||
		!msgs[1].Time.Equal(since.Add(30*time.Minute)) {
		t.Fatalf("messages after the escalation time = %+v, want one review.escalated (critical, at 30m)", msgs)
	}

	decided := since.Add(40 * time.Minute)
	if err := store.Approve(ctx, "ev-1", ledger.Attempt{Number: 2, JobName: "train-ev-1-af2"}, "alice", "", decided); err != nil {
		t.Fatal(err)
	}
	w.round(ctx, h, decided.Add(time.Second))
	w.round(ctx, h, decided.Add(2*time.Second))
	msgs = rcv.messages(t)
	if len(msgs) != 3 || msgs[2].Type != "review.ended" {
		t.Fatalf("messages after the approval = %+v, want one review.ended", msgs)
	}
	end := msgs[2].Remediation
	if end.State != "approved" || end.DecidedBy != "alice" || end.EndedAt == nil || !end.EndedAt.Equal(decided) ||
		end.Summary != "The review of the fix for job ml/train-ev-1 ended: approved by alice" {
		t.Errorf("the ended message = %+v, want approved by alice at %v", end, decided)
	}
	for k, d := range deliveries(t, store, "ev-1") {
		if d.Status != ledger.DeliveryDelivered || d.Attempts != 1 || d.HTTPStatus != 200 {
			t.Errorf("delivery %s = %s after %d attempts (%d), want delivered after 1 (200)", k, d.Status, d.Attempts, d.HTTPStatus)
		}
	}
}

// TestWebhookRetriesWithBackoff: a failed post is tried again 5s later, then 10s
// (or after Retry-After, if longer), with the same delivery id and a fresh
// signature, until it is delivered; the ledger records every attempt.
func TestWebhookRetriesWithBackoff(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	store := hookLedger(t, since, "ev-1")
	rcv := newReceiver(t, 503, 429)
	rcv.header[429] = http.Header{"Retry-After": {"120"}}
	o := hookOptions(t, rcv.URL)
	o.EscalateAfter = 0
	w := newHooks(t, store, o)
	h := w.hooks[0]
	now := since.Add(time.Minute)
	steps := []struct {
		at    time.Duration // after now
		posts int           // by then
	}{{0, 1}, {4 * time.Second, 1}, {5 * time.Second, 2},
		{15 * time.Second, 2}, // the backoff's 10s are over, Retry-After's 120s are not
		{124 * time.Second, 2}, {125 * time.Second, 3}, {time.Hour, 3}}
	for _, st := range steps {
		h.clock = func() time.Time { return now.Add(st.at) }
		w.round(ctx, h, now.Add(st.at))
		if got := len(rcv.got()); got != st.posts {
			t.Fatalf("posts after a round at +%s = %d, want %d", st.at, got, st.posts)
		}
	}
	posts := rcv.got()
	if posts[0].header.Get(HeaderDelivery) != posts[2].header.Get(HeaderDelivery) ||
		posts[0].header.Get(HeaderSignature) == posts[2].header.Get(HeaderSignature) {
		t.Errorf("attempts' headers %v, %v: want one delivery id and a signature per attempt", posts[0].header, posts[2].header)
	}
	d := deliveries(t, store, "ev-1")["oncall/pending"]
	if d.Status != ledger.DeliveryDelivered || d.Attempts != 3 || d.LastError != "" {
		t.Errorf("the delivery = %+v, want delivered after 3 attempts", d)
	}
}

// TestWebhookGivesUp: a refusal (400) is not tried again; a receiver that keeps
// failing is given up after MaxAttempts; both are recorded failed, with why.
func TestWebhookGivesUp(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	for _, tt := range []struct {
		name     string
		answers  []int
		attempts int
		err      string
	}{
		{"refused", []int{400, 200}, 1, "400 Bad Request: no message"},
		{"failing", []int{500, 502, 500, 200}, 3, "500 Internal Server Error: no message (attempt 3 of 3)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := hookLedger(t, since, "ev-1")
			rcv := newReceiver(t, tt.answers...)
			o := hookOptions(t, rcv.URL)
			o.MaxAttempts, o.EscalateAfter = 3, 0
			w := newHooks(t, store, o)
			for i := range 10 {
				w.round(ctx, w.hooks[0], since.Add(time.Duration(i)*time.Hour))
			}
			d := deliveries(t, store, "ev-1")["oncall/pending"]
			if len(rcv.got()) != tt.attempts || d.Status != ledger.DeliveryFailed || d.Attempts != tt.attempts || !strings.HasPrefix(d.LastError, tt.err) {
				t.Errorf("%d posts; the delivery = %s after %d attempts (%q); want failed after %d (%q)",
					len(rcv.got()), d.Status, d.Attempts, d.LastError, tt.attempts, tt.err)
			}
		})
	}
}

// TestWebhookURLIsNeverShown: a webhook whose URL is a secret (in a file, as a
// Slack webhook's): the ledger's record of a failed post and the log name the
// webhook, never the URL; a redirect is not followed.
func TestWebhookURLIsNeverShown(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	elsewhere := newReceiver(t)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for _, base := range []string{gone.URL, redirect.URL} {
		store := hookLedger(t, since, "ev-1")
		w, logs := urlFileHooks(t, store, base+"/services/T000/B000/XXXXSECRETXXXX")
		w.round(ctx, w.hooks[0], since.Add(time.Minute))
		d := deliveries(t, store, "ev-1")["chat/pending"]
		if d.Status != ledger.DeliveryFailed || d.LastError == "" || strings.Contains(d.LastError, "SECRET") ||
			strings.Contains(logs.String(), "SECRET") || !strings.Contains(logs.String(), "webhook=chat") {
			t.Errorf("the failed delivery = %s (%q), log %q: want failed, naming the webhook and not the URL", d.Status, d.LastError, logs.String())
		}
	}
	if n := len(elsewhere.got()); n != 0 {
		t.Errorf("the redirect was followed: %d posts elsewhere", n)
	}
}

// TestWebhookHangingReceiverHoldsUpNoOther: one receiver that never answers does
// not hold up another webhook's messages.
func TestWebhookHangingReceiverHoldsUpNoOther(t *testing.T) {
	store := hookLedger(t, time.Now().Add(-time.Minute), "ev-1")
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer hang.Close()
	defer close(release)
	rcv := newReceiver(t)
	slow, fast := hookOptions(t, hang.URL), hookOptions(t, rcv.URL)
	slow.Name, slow.Timeout = "slow", time.Hour
	w := newHooks(t, store, slow, fast)
	ctx, cancel := context.WithCancel(testwait.Context(t))
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testwait.For(t, "the other webhook's message", &rcv.changed, func() bool { return len(rcv.got()) == 1 })
}

// slackBody is the body of the Slack format's pending message about r, decoded.
func slackBody(t *testing.T, r *ledger.Remediation) map[string]string {
	t.Helper()
	o := WebhookOptions{Name: "chat", Format: FormatSlack, ExternalURL: "https://autofix.example/"}
	b, err := o.body(r, ledger.DeliveryPending, t0)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSlackMessageIsEscaped(t *testing.T) {
	r := waiting("ev-1", "ml", t0)
	r.JobName = "train <!channel> & <https://evil.example|click>"
	m := slackBody(t, &r)
	want := ":hourglass: *A fix for job ml/train &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; (oom_memory) awaits review*\n" +
		"autofix proposes a retry: memory 16Gi -&gt; 27Gi (P(success) 0.93, 1.7x the failed run's cost). Waiting for review since " +
		"2026-03-01T12:00:00Z. Open the review link to approve or reject it.\n" +
		"> torch.cuda.OutOfMemoryError: CUDA out of memory\n<https://autofix.example/ui/remediations/ev-1|Open the review>"
	if len(m) != 1 || m["text"] != want {
		t.Errorf("the Slack message = %q\nwant {text: %q}", m, want)
	}
}

func TestVerifyRefusesForgeriesAndReplays(t *testing.T) {
	body := []byte(`{"version":1}`)
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	sig := Sign([]byte(hookSecret), now.Unix(), body)
	if err := Verify([]byte(hookSecret), ts, sig, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("Verify of a fresh, signed post = %v", err)
	}
	tests := []struct {
		name           string
		secret, ts     string
		sig            string
		body           []byte
		at             time.Time
		wantInTheError string
	}{
		{"a replay an hour later", hookSecret, ts, sig, body, now.Add(time.Hour), HeaderTimestamp},
		{"a timestamp from the future", hookSecret, ts, sig, body, now.Add(-time.Hour), HeaderTimestamp},
		{"a changed body", hookSecret, ts, sig, []byte(`{"version":2}`), now, HeaderSignature},
		{"a changed timestamp", hookSecret, "1800000001", sig, body, now, HeaderSignature},
		{"another secret", "guess", ts, sig, body, now, HeaderSignature},
		{"no timestamp", hookSecret, "", sig, body, now, HeaderTimestamp},
		{"no signature", hookSecret, ts, "", body, now, HeaderSignature},
	}
	for _, tt := range tests {
		if err := Verify([]byte(tt.secret), tt.ts, tt.sig, tt.body, tt.at, 5*time.Minute); err == nil || !strings.Contains(err.Error(), tt.wantInTheError) {
			t.Errorf("%s: Verify = %v, want an error about %s", tt.name, err, tt.wantInTheError)
		}
	}
}

func TestNewWebhooksRefusesBadOptions(t *testing.T) {
	ok := WebhookOptions{Name: "oncall", URL: "https://hooks.example/x", SecretFile: "/s", ExternalURL: "https://autofix.example/"}
	tests := []struct {
		name  string
		edit  func(o *WebhookOptions)
		field string
	}{
		{"a name with capitals", func(o *WebhookOptions) { o.Name = "OnCall" }, "Name"},
		{"no URL", func(o *WebhookOptions) { o.URL = "" }, "URL, URLFile"},
		{"both URLs", func(o *WebhookOptions) { o.URLFile = "/u" }, "URL, URLFile"},
		{"credentials in the URL", func(o *WebhookOptions) { o.URL = "https://u:p@hooks.example/" }, "URL"},
		{"an ftp URL", func(o *WebhookOptions) { o.URL = "ftp://hooks.example/" }, "URL"},
		{"another format", func(o *WebhookOptions) { o.Format = "teams" }, "Format"},
		{"json without a secret", func(o *WebhookOptions) { o.SecretFile = "" }, "SecretFile"},
		{"another kind", func(o *WebhookOptions) { o.Kinds = []ledger.DeliveryKind{"approved"} }, "Kinds"},
		{"no external URL", func(o *WebhookOptions) { o.ExternalURL = "" }, "ExternalURL"},
	}
	for _, tt := range tests {
		o := ok
		tt.edit(&o)
		_, err := NewWebhooks([]WebhookOptions{o}, nil, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "webhooks[0]: WebhookOptions."+tt.field+":") || strings.Contains(err.Error(), "u:p") {
			t.Errorf("%s: NewWebhooks = %v, want an error naming %s", tt.name, err, tt.field)
		}
	}
	if _, err := NewWebhooks([]WebhookOptions{ok, ok}, nil, nil); err == nil || !strings.Contains(err.Error(), "webhooks[1]") {
		t.Errorf("two webhooks of one name: NewWebhooks = %v, want an error naming webhooks[1]", err)
	}
}

// TestWebhookKinds: a webhook that takes only the end of reviews is told of the end
// of a review it was never told had begun; one that takes only their beginning is
// told nothing more.
func TestWebhookKinds(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-time.Hour).Truncate(time.Second)
	store := hookLedger(t, since, "ev-1")
	ends, begins := newReceiver(t), newReceiver(t)
	oe, ob := hookOptions(t, ends.URL), hookOptions(t, begins.URL)
	oe.Name, oe.Kinds = "ends", []ledger.DeliveryKind{ledger.DeliveryEnded}
	ob.Name, ob.Kinds = "begins", []ledger.DeliveryKind{ledger.DeliveryPending}
	w := newHooks(t, store, oe, ob)
	rounds := func(at time.Time) {
		for _, h := range w.hooks {
			w.round(ctx, h, at)
		}
	}
	rounds(since.Add(45 * time.Minute)) // past the escalation time
	if err := store.Reject(ctx, "ev-1", "bob", "not now", since.Add(50*time.Minute)); err != nil {
		t.Fatal(err)
	}
	rounds(since.Add(51 * time.Minute))
	rounds(since.Add(52 * time.Minute))
	if got := ends.types(t); len(got) != 1 || got[0] != "review.ended" {
		t.Errorf("the ends webhook got %v, want [review.ended]", got)
	}
	if got := begins.types(t); len(got) != 1 || got[0] != "review.pending" {
		t.Errorf("the begins webhook got %v, want [review.pending]", got)
	}
	if d := deliveries(t, store, "ev-1")["ends/pending"]; d.Status != ledger.DeliverySkipped || d.Attempts != 0 {
		t.Errorf("the ends webhook's pending message = %s after %d attempts, want skipped, never tried", d.Status, d.Attempts)
	}
}

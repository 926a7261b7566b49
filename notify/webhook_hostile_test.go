package notify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/internal/testwait"
	"github.com/autofix/autofix/ledger"
)

// TestWebhookURLEchoedByTheReceiverIsNotShown: a receiver's error page that repeats
// the request (as Express's "Cannot POST /path" does, or a proxy's 404 with the
// URL, JSON-escaped or not) does not put a secret URL's key in the ledger or the
// log.
func TestWebhookURLEchoedByTheReceiverIsNotShown(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	const key = "Xq7KxSECRETk3yZ9Wv2"
	path := "/services/T04ABCDEF/B05GHIJKL/" + key
	for _, echo := range []func(r *http.Request) string{
		func(r *http.Request) string { return "Cannot POST " + r.URL.Path },
		func(r *http.Request) string { return "no route for http://" + r.Host + r.URL.RequestURI() },
		func(r *http.Request) string {
			return `{"error":"unknown hook","path":"` + strings.ReplaceAll(r.URL.Path, "/", `\/`) + `"}`
		},
		func(r *http.Request) string { return "unknown token " + key + " for this workspace" },
		func(r *http.Request) string { return "bad query " + r.URL.RawQuery },
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, echo(r))
		}))
		store := hookLedger(t, since, "ev-1")
		w, logs := urlFileHooks(t, store, srv.URL+path+"?sig=Qz81SIGNATUREPART")
		w.round(ctx, w.hooks[0], since.Add(time.Minute))
		srv.Close()
		d := deliveries(t, store, "ev-1")["chat/pending"]
		if d.Status != ledger.DeliveryFailed || !strings.HasPrefix(d.LastError, "404 Not Found") {
			t.Errorf("the delivery = %s (%q), want failed with a 404", d.Status, d.LastError)
		}
		for _, secret := range []string{"SECRET", "SIGNATURE"} {
			if strings.Contains(d.LastError, secret) || strings.Contains(logs.String(), secret) {
				t.Errorf("the receiver's answer put the URL in the record %q or the log %q", d.LastError, logs.String())
			}
		}
	}
}

// TestWebhookSignsWhenItPosts: a round's posts are made one after another, each
// up to Timeout, so the last of a round of slow ones is made long after the round
// began; it is signed when it is made, or a receiver that refuses old timestamps
// (as docs/api.md tells it to) refuses it, and a refusal is not tried again.
func TestWebhookSignsWhenItPosts(t *testing.T) {
	ctx := testwait.Context(t)
	began := time.Now().Add(-10 * time.Minute).Truncate(time.Second) // the round began 10 minutes ago
	store := hookLedger(t, began.Add(-time.Minute), "ev-1")
	var verified []error
	strict := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := Verify([]byte(hookSecret), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, time.Now(), 5*time.Minute)
		verified = append(verified, err)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
		}
	}))
	defer strict.Close()
	o := hookOptions(t, strict.URL)
	o.EscalateAfter = 0
	w := newHooks(t, store, o)
	w.round(ctx, w.hooks[0], began)
	d := deliveries(t, store, "ev-1")["oncall/pending"]
	if len(verified) != 1 || verified[0] != nil || d.Status != ledger.DeliveryDelivered {
		t.Errorf("the receiver's verdicts %v; the delivery %s (%q); want one post, verified and delivered", verified, d.Status, d.LastError)
	}
}

// TestWebhookBeginningBeforeEscalation: a review first seen after it has waited the
// escalation time (the leader was down, the webhook is new) gets both its messages
// in one round: the pending one first.
func TestWebhookBeginningBeforeEscalation(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	store := hookLedger(t, since, "ev-1")
	rcv := newReceiver(t)
	w := newHooks(t, store, hookOptions(t, rcv.URL))
	w.round(ctx, w.hooks[0], since.Add(2*time.Hour))
	if got, want := rcv.types(t), []string{"review.pending", "review.escalated"}; !slices.Equal(got, want) {
		t.Errorf("messages in the order posted = %v, want %v", got, want)
	}
}

// TestWebhookTakingEndsLaterIsNotToldOfOldOnes: a webhook that took only the
// beginnings of reviews and is then configured to take their ends too is told of
// the reviews that end from then on, not of every review in the ledger's history
// that ended while it did not take ends.
func TestWebhookTakingEndsLaterIsNotToldOfOldOnes(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-time.Hour).Truncate(time.Second)
	store := hookLedger(t, since, "ev-1", "ev-2", "ev-3")
	rcv := newReceiver(t)
	o := hookOptions(t, rcv.URL)
	o.EscalateAfter, o.Kinds = 0, []ledger.DeliveryKind{ledger.DeliveryPending}
	before := newHooks(t, store, o)
	before.round(ctx, before.hooks[0], since.Add(time.Minute))
	for i, id := range []string{"ev-1", "ev-2"} {
		if err := store.Reject(ctx, id, "bob", "no", since.Add(time.Duration(2+i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	before.round(ctx, before.hooks[0], since.Add(5*time.Minute))

	o.Kinds = nil // all: the new configuration
	after := newHooks(t, store, o)
	after.round(ctx, after.hooks[0], since.Add(10*time.Minute))
	if err := store.Reject(ctx, "ev-3", "bob", "no", since.Add(11*time.Minute)); err != nil {
		t.Fatal(err)
	}
	after.round(ctx, after.hooks[0], since.Add(12*time.Minute))
	var got []string
	for _, m := range rcv.messages(t) {
		got = append(got, m.Type+" "+m.Remediation.ID)
	}
	want := []string{"review.pending ev-1", "review.pending ev-2", "review.pending ev-3", "review.ended ev-3"}
	if !slices.Equal(got, want) {
		t.Errorf("messages = %v, want %v", got, want)
	}
}

// TestSlackMessageMentionsNoOneAndLinksNowhere: Mattermost and Rocket.Chat, which
// take the Slack format, read Markdown and plain mentions too: what a job printed
// makes no mention of a channel and no link or image, in any of them.
func TestSlackMessageMentionsNoOneAndLinksNowhere(t *testing.T) {
	r := waiting("ev-1", "ml", t0)
	r.Recommendation.Classification.Evidence = []string{
		"CUDA out of memory @channel @here @all <!here> [Open the review](https://evil.example/approve) ![x](https://track.example/p.png)"}
	text := slackBody(t, &r)["text"]
	for _, bad := range []*regexp.Regexp{regexp.MustCompile(`@(channel|here|all|everyone)\b`), regexp.MustCompile(`<!`),
		regexp.MustCompile(`\]\(`), regexp.MustCompile(`<https://evil`)} {
		if bad.MatchString(text) {
			t.Errorf("the Slack message %q matches %s", text, bad)
		}
	}
	if !strings.Contains(text, "CUDA out of memory") || !strings.HasSuffix(text, "\n<https://autofix.example/ui/remediations/ev-1|Open the review>") {
		t.Errorf("the Slack message %q: want the evidence and the review link", text)
	}
}

// staleLedger is a replica's view of the ledger whose read of the pending reviews
// was made before another replica's round: during a hand-over of the lease, two
// leaders run rounds at once.
type staleLedger struct {
	*ledger.Store
	pending []ledger.Remediation
}

func (s *staleLedger) PendingReviews(context.Context, int) ([]ledger.Remediation, error) {
	return s.pending, nil
}

// TestWebhookNothingAfterTheEnd: a replica that read a review as pending before it
// ended, and queues its escalation after another replica queued its end, does not
// tell the receiver the review escalated after it was told it ended.
func TestWebhookNothingAfterTheEnd(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-time.Hour).Truncate(time.Second)
	store := hookLedger(t, since, "ev-1")
	rcv := newReceiver(t)
	b := newHooks(t, store, hookOptions(t, rcv.URL))
	b.round(ctx, b.hooks[0], since.Add(time.Minute))
	read, err := store.PendingReviews(ctx, maxReviews) // replica a's read, at 45m
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Reject(ctx, "ev-1", "bob", "no", since.Add(45*time.Minute)); err != nil {
		t.Fatal(err)
	}
	b.round(ctx, b.hooks[0], since.Add(45*time.Minute))
	a := newHooks(t, &staleLedger{Store: store, pending: read}, hookOptions(t, rcv.URL))
	a.round(ctx, a.hooks[0], since.Add(45*time.Minute))
	a.round(ctx, a.hooks[0], since.Add(46*time.Minute))
	if got, want := rcv.types(t), []string{"review.pending", "review.ended"}; !slices.Equal(got, want) {
		t.Errorf("messages = %v, want %v", got, want)
	}
}

// cancelAfter is a transport that ends the round's context once the receiver has
// answered: the lease lost, or a shutdown, at that moment.
type cancelAfter struct {
	rt     http.RoundTripper
	cancel context.CancelFunc
}

func (c cancelAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	c.cancel()
	return resp, err
}

// TestWebhookRoundCutShort: a post the receiver took just before the round's
// context ended is recorded delivered (or the next leader sends it again); a post
// cut short before any answer is no attempt: not counted, not logged as given up,
// not recorded.
func TestWebhookRoundCutShort(t *testing.T) {
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	t.Run("after the answer", func(t *testing.T) {
		store := hookLedger(t, since, "ev-1")
		rcv := newReceiver(t)
		o := hookOptions(t, rcv.URL)
		o.EscalateAfter = 0
		w := newHooks(t, store, o)
		ctx, cancel := context.WithCancel(testwait.Context(t))
		defer cancel()
		h := w.hooks[0]
		h.hc.Transport = cancelAfter{rt: h.hc.Transport, cancel: cancel}
		w.round(ctx, h, since.Add(time.Minute))
		if d := deliveries(t, store, "ev-1")["oncall/pending"]; len(rcv.got()) != 1 || d.Status != ledger.DeliveryDelivered || d.Attempts != 1 {
			t.Errorf("%d posts; the delivery = %s after %d attempts; want it delivered after 1", len(rcv.got()), d.Status, d.Attempts)
		}
	})
	t.Run("before the answer", func(t *testing.T) {
		store := hookLedger(t, since, "ev-1")
		ctx, cancel := context.WithCancel(testwait.Context(t))
		defer cancel()
		srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // read to its end, the server sees the client hang up
			cancel()
			<-r.Context().Done()
		}))
		defer srv.Close()
		o := hookOptions(t, srv.URL)
		o.EscalateAfter, o.MaxAttempts = 0, 1
		var logs bytes.Buffer
		w, err := NewWebhooks([]WebhookOptions{o}, store, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		w.round(ctx, w.hooks[0], since.Add(time.Minute))
		d := deliveries(t, store, "ev-1")["oncall/pending"]
		if n := counter(t, w, "autofix_webhook_posts_total", "result", ResultUnreachable); n != 0 || strings.Contains(logs.String(), "giving up") ||
			d.Status != ledger.DeliveryQueued || d.Attempts != 0 {
			t.Errorf("unreachable posts %v, log %q, the delivery %s after %d attempts; want none, nothing, queued after 0",
				n, logs.String(), d.Status, d.Attempts)
		}
	})
}

// TestWebhookRefusesAShortKey: a signature keyed with a few guessable bytes is
// forged by whoever sees one signed post and tries the keys; a key shorter than
// MinSecretBytes is not used, and the error does not show it.
func TestWebhookRefusesAShortKey(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	store := hookLedger(t, since, "ev-1")
	rcv := newReceiver(t)
	o := hookOptions(t, rcv.URL)
	o.SecretFile, o.MaxAttempts = secretFile(t, "hunter2"), 1
	w := newHooks(t, store, o)
	w.round(ctx, w.hooks[0], since.Add(time.Minute))
	d := deliveries(t, store, "ev-1")["oncall/pending"]
	if len(rcv.got()) != 0 || d.Status != ledger.DeliveryFailed || !strings.Contains(d.LastError, "want at least 16") ||
		strings.Contains(d.LastError, "hunter2") {
		t.Errorf("%d posts; the delivery %s (%q); want none, failed for the key's length, without the key", len(rcv.got()), d.Status, d.LastError)
	}
}

// TestWebhookRetryAfterForms: Retry-After is seconds or an HTTP date (RFC 9110);
// either is honoured up to the 10 minutes' cap, a number too large for an int
// included, and one in the past or negative is the backoff's.
func TestWebhookRetryAfterForms(t *testing.T) {
	ctx := testwait.Context(t)
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	now := since.Add(time.Minute)
	for _, tt := range []struct {
		name, value string
		next        time.Duration // after now
	}{
		{"a date", now.Add(3 * time.Minute).UTC().Format(http.TimeFormat), 3 * time.Minute},
		{"a date a day away", now.Add(24 * time.Hour).UTC().Format(http.TimeFormat), 10 * time.Minute},
		{"a date in the past", now.Add(-time.Hour).UTC().Format(http.TimeFormat), 5 * time.Second},
		{"huge seconds", "99999999999999999999", 10 * time.Minute},
		{"negative seconds", "-30", 5 * time.Second},
		{"not a value", "soon", 5 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := hookLedger(t, since, "ev-1")
			rcv := newReceiver(t, 503)
			rcv.header[503] = http.Header{"Retry-After": {tt.value}}
			o := hookOptions(t, rcv.URL)
			o.EscalateAfter = 0
			w := newHooks(t, store, o)
			w.round(ctx, w.hooks[0], now)
			if d := deliveries(t, store, "ev-1")["oncall/pending"]; d.Status != ledger.DeliveryQueued || !d.NextAt.Equal(now.Add(tt.next)) {
				t.Errorf("Retry-After %q: the delivery %s, next attempt at +%s; want queued, at +%s", tt.value, d.Status, d.NextAt.Sub(now), tt.next)
			}
		})
	}
}

package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/autofix/autofix/internal/boundedfile"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/telemetry"
)

// WebhookOptions configure one webhook. Name, ExternalURL and one of URL and URLFile
// are required; zero values of the others take the defaults named.
type WebhookOptions struct {
	// Name names the webhook in the ledger's delivery records, metrics and logs
	// (its URL never appears there): [a-z0-9-], at most 63 bytes.
	Name string
	// URL is where messages are posted; URLFile holds it instead, for a URL that is
	// a secret (a Slack webhook's is), read for every post.
	URL, URLFile string
	// Format is FormatJSON (default) or FormatSlack.
	Format string
	// SecretFile holds the key of the messages' signature, read for every post;
	// required with FormatJSON.
	SecretFile string
	// Kinds are the messages sent (default all three).
	Kinds []ledger.DeliveryKind
	// EscalateAfter is how long a review waits before an escalated message; 0: never.
	EscalateAfter time.Duration
	// Timeout bounds one post (default 10s).
	Timeout time.Duration
	// MaxAttempts bounds the posts of one message (default 8): a failed one is tried
	// again after 5s, 10s, 20s ... up to 10m apart; a refusal (a 4xx other than 408
	// and 429) is not tried again.
	MaxAttempts int
	// ExternalURL is autofix's URL as reviewers' browsers reach it; TeamLabel the
	// Job label whose value is the message's team.
	ExternalURL, TeamLabel string
	// TLS configures connections to an https:// URL; nil: the system's roots.
	TLS *tls.Config
}

// Defaults and bounds of webhooks.
const (
	DefaultMaxAttempts = 8
	firstBackoff       = 5 * time.Second
	maxBackoff         = 10 * time.Minute
	// maxDue bounds the posts of one round, maxEnded the ended reviews it reads,
	// maxReviews the pending ones.
	maxDue, maxEnded, maxReviews = 20, 100, DefaultMaxAlerts
	// webhookPoll is how often a webhook's round runs without a wake: what brings
	// a retry that is due.
	webhookPoll = 5 * time.Second
)

var webhookName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidWebhookName reports whether name can name a webhook: [a-z0-9-], at most 63
// characters, beginning and ending with a letter or digit.
func ValidWebhookName(name string) bool { return webhookName.MatchString(name) }

// WebhookLedger is what webhooks read and write of the ledger: the reviews, and
// the messages' outbox and delivery record.
type WebhookLedger interface {
	Ledger
	EnqueueDelivery(ctx context.Context, d ledger.Delivery) (bool, error)
	DueDeliveries(ctx context.Context, webhook string, now time.Time, limit int) ([]ledger.Delivery, error)
	RecordDelivery(ctx context.Context, webhook, id string, kind ledger.DeliveryKind, r ledger.DeliveryResult) error
	EndedReviews(ctx context.Context, webhook string, limit int) ([]string, error)
}

// Webhooks tell webhooks about the reviews: a message when a fix begins to wait
// for review, one when it has waited EscalateAfter, one when its review ends. Each
// message is queued in the ledger once per webhook and delivered from there, with
// retries, so that a restart or a new leader neither loses nor repeats one (a
// hand-over in the middle of a post may send it twice: receivers deduplicate by
// HeaderDelivery). Nothing here is on the path of a decision.
type Webhooks struct {
	hooks  []*webhook
	ledger WebhookLedger
	log    *slog.Logger
	posts  *prometheus.CounterVec
}

type webhook struct {
	o    WebhookOptions
	hc   *http.Client
	wake chan struct{}
	// queued are the messages of the pending reviews this process has queued (or
	// found queued), so that a round does not queue them again; only the hook's
	// goroutine touches it, and it holds only reviews that are pending.
	queued map[string]bool
	// clock says when an attempt is signed: time.Now.
	clock func() time.Time
}

// NewWebhooks returns the webhooks of opts, which tell of the reviews in l. Option
// errors name the webhook and the field.
func NewWebhooks(opts []WebhookOptions, l WebhookLedger, log *slog.Logger) (*Webhooks, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Webhooks{ledger: l, log: log,
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "autofix_webhook_posts_total",
			Help: "Posts of review messages to webhooks, by webhook and result: ok, refused (4xx), failed (5xx), unreachable, credentials."},
			[]string{"webhook", "result"})}
	names := map[string]bool{}
	for i, o := range opts {
		if err := o.check(); err != nil {
			return nil, fmt.Errorf("webhooks[%d]: %w", i, err)
		}
		if names[o.Name] {
			return nil, fmt.Errorf("webhooks[%d]: WebhookOptions.Name: %q is another webhook's too", i, o.Name)
		}
		names[o.Name] = true
		if o.Format == "" {
			o.Format = FormatJSON
		}
		if len(o.Kinds) == 0 {
			o.Kinds = []ledger.DeliveryKind{ledger.DeliveryPending, ledger.DeliveryEscalated, ledger.DeliveryEnded}
		}
		if o.Timeout == 0 {
			o.Timeout = DefaultTimeout
		}
		if o.MaxAttempts == 0 {
			o.MaxAttempts = DefaultMaxAttempts
		}
		w.hooks = append(w.hooks, &webhook{o: o, wake: make(chan struct{}, 1), queued: map[string]bool{}, clock: time.Now,
			// A redirect is not followed: the messages go only where the
			// configuration says.
			hc: &http.Client{Transport: telemetry.HTTP1Transport(o.TLS, 2), CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			}}})
	}
	return w, nil
}

func (o *WebhookOptions) check() error {
	switch {
	case !webhookName.MatchString(o.Name):
		return fmt.Errorf("WebhookOptions.Name: %q, want [a-z0-9-] of at most 63 characters", o.Name)
	case (o.URL == "") == (o.URLFile == ""):
		return errors.New("WebhookOptions.URL, URLFile: one or the other")
	case o.Format != "" && o.Format != FormatJSON && o.Format != FormatSlack:
		return fmt.Errorf("WebhookOptions.Format: %q, want json or slack", o.Format)
	case o.Format != FormatSlack && o.SecretFile == "":
		return errors.New("WebhookOptions.SecretFile: required with the json format: receivers verify the signature")
	case o.EscalateAfter < 0 || o.Timeout < 0 || o.MaxAttempts < 0:
		return errors.New("WebhookOptions.EscalateAfter, Timeout, MaxAttempts: negative")
	}
	if o.URL != "" {
		if err := CheckWebhookURL(o.URL); err != nil {
			return fmt.Errorf("WebhookOptions.URL: %w", err)
		}
	}
	if err := CheckURL(o.ExternalURL); err != nil {
		return fmt.Errorf("WebhookOptions.ExternalURL: %w", err)
	}
	for _, k := range o.Kinds {
		if !k.Valid() {
			return fmt.Errorf("WebhookOptions.Kinds: %q, want pending, escalated or ended", k)
		}
	}
	return nil
}

// CheckWebhookURL checks a webhook's URL: http:// or https://, a host, no
// credentials and no fragment (a query is allowed: some chat services take their key
// there). Its errors never repeat the URL, which may be a secret.
func CheckWebhookURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.User != nil:
		return errors.New("holds credentials")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want an http:// or https:// URL")
	case u.Host == "":
		return errors.New("no host")
	case u.Fragment != "":
		return errors.New("has a fragment")
	}
	return nil
}

// ReadWebhookURL reads and checks the URL in a webhook's URL file: one line, at
// most 4 KiB.
func ReadWebhookURL(path string) (string, error) {
	b, err := boundedfile.Read(path, 4<<10)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if err := CheckWebhookURL(s); err != nil {
		return "", err
	}
	return s, nil
}

// MinSecretBytes is the shortest key of a webhook's signature: a short one is found
// by trying keys against one signed post, and then anyone can sign.
const MinSecretBytes = 16

// ReadWebhookSecret reads the key in a webhook's secret file (one line, its newline
// dropped) and checks that it is at least MinSecretBytes long. Its errors never
// show the key.
func ReadWebhookSecret(path string) (string, error) {
	s, err := telemetry.ReadSecretFile(path)
	if err != nil {
		return "", err
	}
	if len(s) < MinSecretBytes {
		return "", fmt.Errorf("%d bytes, want at least %d (e.g. openssl rand -hex 32)", len(s), MinSecretBytes)
	}
	return s, nil
}

// Describe and Collect make the webhooks' metrics a prometheus.Collector.
func (w *Webhooks) Describe(ch chan<- *prometheus.Desc) { w.posts.Describe(ch) }

// Collect collects the webhooks' metrics.
func (w *Webhooks) Collect(ch chan<- prometheus.Metric) { w.posts.Collect(ch) }

// Wake asks every webhook for a round now: a review began or ended in this
// process. It never blocks.
func (w *Webhooks) Wake() {
	for _, h := range w.hooks {
		nudge(h.wake)
	}
}

// Run runs every webhook's rounds, each in its own goroutine so that a slow
// receiver holds up no other, until ctx ends.
func (w *Webhooks) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, h := range w.hooks {
		wg.Go(func() {
			w.log.Info("review messages to a webhook", "webhook", h.o.Name, "format", h.o.Format)
			rounds(ctx, webhookPoll, h.wake, func() { w.round(ctx, h, time.Now()) })
		})
	}
	wg.Wait()
}

// round queues h's messages of the reviews at now, and posts those due. Errors
// are logged; the next round tries again.
func (w *Webhooks) round(ctx context.Context, h *webhook, now time.Time) {
	if err := w.queue(ctx, h, now); err != nil && ctx.Err() == nil {
		w.log.Warn("webhook: queue review messages", "webhook", h.o.Name, "err", err)
	}
	due, err := w.ledger.DueDeliveries(ctx, h.o.Name, now, maxDue)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("webhook: read the messages due", "webhook", h.o.Name, "err", err)
		}
		return
	}
	for _, d := range due {
		if ctx.Err() != nil {
			return
		}
		r := h.post(ctx, &d, now)
		if r.HTTPStatus == 0 && ctx.Err() != nil {
			return // cut short by the end of the round (a shutdown, the lease lost): no attempt
		}
		w.posts.WithLabelValues(h.o.Name, r.result).Inc()
		if r.Status == ledger.DeliveryFailed {
			w.log.Warn("webhook: a message was not delivered; giving up", "webhook", h.o.Name, "remediation", d.EventID,
				"message", MessageType(d.Kind), "attempts", d.Attempts+1, "err", r.Err)
		}
		// Recorded even if ctx ended after the answer: a delivered message left
		// queued would be sent again by the next leader.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		err := w.ledger.RecordDelivery(rctx, h.o.Name, d.EventID, d.Kind, r.DeliveryResult)
		cancel()
		if err != nil {
			w.log.Warn("webhook: record a delivery", "webhook", h.o.Name, "remediation", d.EventID, "err", err)
		}
	}
}

// recordTimeout bounds the record of an attempt made as the round's context ended.
const recordTimeout = 5 * time.Second

// queue queues the messages of the reviews pending at now, and of those that ended.
func (w *Webhooks) queue(ctx context.Context, h *webhook, now time.Time) error {
	wants := func(k ledger.DeliveryKind) bool { return slices.Contains(h.o.Kinds, k) }
	pending, err := w.ledger.PendingReviews(ctx, maxReviews)
	if err != nil {
		return fmt.Errorf("read the reviews: %w", err)
	}
	still := make(map[string]bool, 2*len(pending))
	for i := range pending {
		r := &pending[i]
		kinds := []ledger.DeliveryKind{ledger.DeliveryPending}
		if h.o.EscalateAfter > 0 && !now.Before(pendingSince(r).Add(h.o.EscalateAfter)) {
			kinds = append(kinds, ledger.DeliveryEscalated)
		}
		for _, k := range kinds {
			key := r.EventID + "\x00" + string(k)
			still[key] = true
			if h.queued[key] {
				continue
			}
			if !wants(k) && k != ledger.DeliveryPending {
				continue
			}
			// The pending message is recorded even when it is not sent: it is
			// what tells a later round that this webhook knew of the review.
			if err := w.enqueue(ctx, h, r, k, now, !wants(k)); err != nil {
				return err
			}
			h.queued[key] = true
		}
	}
	for key := range h.queued { // reviews no longer pending: forgotten
		if !still[key] {
			delete(h.queued, key)
		}
	}
	// The end of a review is recorded even when it is not sent (skipped), as the
	// beginning is: a webhook configured to take ends later is told of the reviews
	// that end from then on, not of every one in the ledger that ended before. Its
	// messages still queued are superseded all the same: the review is over.
	skip := !wants(ledger.DeliveryEnded)
	ended, err := w.ledger.EndedReviews(ctx, h.o.Name, maxEnded)
	if err != nil {
		return err
	}
	for _, id := range ended {
		r, err := w.ledger.Get(ctx, id)
		if errors.Is(err, ledger.ErrNotFound) {
			continue // pruned meanwhile
		} else if err != nil {
			return fmt.Errorf("remediation %s: %w", id, err)
		}
		if err := w.enqueue(ctx, h, &r, ledger.DeliveryEnded, now, skip); err != nil {
			return err
		}
	}
	return nil
}

// enqueue queues h's kind message about r; a skipped one is recorded, not sent.
func (w *Webhooks) enqueue(ctx context.Context, h *webhook, r *ledger.Remediation, kind ledger.DeliveryKind, now time.Time, skip bool) error {
	body, err := h.o.body(r, kind, now)
	if err != nil {
		return fmt.Errorf("remediation %s: %w", r.EventID, err)
	}
	d := ledger.Delivery{Webhook: h.o.Name, EventID: r.EventID, Kind: kind, Payload: body, CreatedAt: now}
	if skip {
		d.Status = ledger.DeliverySkipped
	}
	_, err = w.ledger.EnqueueDelivery(ctx, d)
	return err
}

// postResult is a post's record, and its metric's result.
type postResult struct {
	ledger.DeliveryResult
	result string
}

// post posts d at now, and returns what to record: delivered, failed for good, or
// queued for another attempt after a backoff.
func (h *webhook) post(ctx context.Context, d *ledger.Delivery, now time.Time) postResult {
	status, result, err := h.send(ctx, d)
	r := postResult{DeliveryResult: ledger.DeliveryResult{At: now, HTTPStatus: status}, result: result}
	switch {
	case err == nil:
		r.Status = ledger.DeliveryDelivered
		return r
	case result == ResultRefused && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
		r.Status, r.Err = ledger.DeliveryFailed, err.Error()
		return r
	case d.Attempts+1 >= h.o.MaxAttempts:
		r.Status, r.Err = ledger.DeliveryFailed, fmt.Sprintf("%v (attempt %d of %d)", err, d.Attempts+1, h.o.MaxAttempts)
		return r
	}
	r.Status, r.Err = ledger.DeliveryQueued, err.Error()
	wait := backoff(d.Attempts + 1)
	var ra *retryAfter
	if errors.As(err, &ra) {
		wait = max(wait, ra.wait(now))
	}
	r.NextAt = now.Add(wait)
	return r
}

// backoff is the wait after the nth failed attempt: 5s, 10s, 20s, ... at most 10m.
func backoff(n int) time.Duration {
	d := firstBackoff
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// retryAfter is the error of an answer with a Retry-After header.
type retryAfter struct {
	err   error
	value string
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

// wait is how long the header asks to wait from now, at most maxBackoff: it is
// seconds or an HTTP date (RFC 9110); 0 when it is neither, or past.
func (e *retryAfter) wait(now time.Time) time.Duration {
	if s, err := strconv.ParseUint(e.value, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if err != nil || s > uint64(maxBackoff/time.Second) { // too large for a number: as large as can be
			return maxBackoff
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(e.value); err == nil {
		return min(max(t.Sub(now), 0), maxBackoff)
	}
	return 0
}

// send makes one post of d, signed as it is made (not when the round began: a
// round's posts, one after another, may take longer than a receiver tolerates of
// a timestamp). It returns the answer's status (0 without one), the metric's
// result, and an error that never holds the URL or a secret.
func (h *webhook) send(ctx context.Context, d *ledger.Delivery) (int, string, error) {
	target := h.o.URL
	if h.o.URLFile != "" {
		u, err := ReadWebhookURL(h.o.URLFile)
		if err != nil {
			return 0, ResultCredentials, fmt.Errorf("URL file: %w", err)
		}
		target = u
	}
	ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(d.Payload))
	if err != nil {
		return 0, ResultFailed, errors.New("the URL cannot be posted to")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "autofix-webhook/1")
	req.Header.Set(HeaderDelivery, DeliveryID(h.o.Name, d.EventID, d.Kind))
	req.Header.Set(HeaderEvent, MessageType(d.Kind))
	if h.o.SecretFile != "" {
		secret, err := ReadWebhookSecret(h.o.SecretFile)
		if err != nil {
			return 0, ResultCredentials, fmt.Errorf("secret file: %w", err)
		}
		ts := h.clock().Unix()
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(HeaderSignature, Sign([]byte(secret), ts, d.Payload))
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // its message repeats the URL
			err = ue.Err
		}
		return 0, ResultUnreachable, fmt.Errorf("post: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, ResultOK, nil
	}
	result := ResultFailed
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		result = ResultRefused
	}
	what := text(scrub(withoutURL(string(msg), target)), 200)
	if what == "" {
		what = "no message"
	}
	err = fmt.Errorf("%d %s: %s", resp.StatusCode, http.StatusText(resp.StatusCode), what)
	if v := resp.Header.Get("Retry-After"); v != "" {
		err = &retryAfter{err: err, value: v}
	}
	return resp.StatusCode, result, err
}

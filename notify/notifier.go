package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/autofix/autofix/ledger"
)

// Options configure a Notifier. URLs and ExternalURL are required; zero values of
// the others take the defaults named.
type Options struct {
	// URLs are the base URLs of the Alertmanagers (a route prefix is kept), each
	// sent every alert: the members of an Alertmanager cluster each get them, as
	// Prometheus sends them, and deduplicate the notifications among themselves.
	URLs []string
	// ExternalURL is autofix's own URL as reviewers' browsers reach it: the review
	// links are under it.
	ExternalURL string
	// TeamLabel is the Job label whose value becomes the team label; empty: none.
	TeamLabel string
	// Labels are added to every alert (e.g. cluster: prod-eu); they may not name
	// ReservedLabels.
	Labels map[string]string
	// ResendInterval is how often the alerts are sent again (default 1m). A firing
	// alert ends 3 intervals after it was last sent.
	ResendInterval time.Duration
	// EscalateAfter is how long a review waits before its alert's severity is
	// critical instead of warning; 0: never.
	EscalateAfter time.Duration
	// MaxAlerts bounds the reviews alerted in one round, the longest waiting first
	// (default 200).
	MaxAlerts int
	// Timeout bounds one post (default 10s); the posts of a round end within two
	// ResendIntervals whatever it is.
	Timeout time.Duration
	// BearerTokenFile, or BasicAuthUsername and BasicAuthPasswordFile, authenticate
	// to the Alertmanagers; the files are read for every post (a rotated secret is
	// used at once).
	BearerTokenFile                          string
	BasicAuthUsername, BasicAuthPasswordFile string
	// TLS configures connections to https:// URLs; nil: the system's roots.
	TLS *tls.Config
	Log *slog.Logger
}

// Defaults of Options.
const (
	DefaultResendInterval = time.Minute
	DefaultMaxAlerts      = 200
	DefaultTimeout        = 10 * time.Second
)

// Ledger is what the notifier reads of the ledger.
type Ledger interface {
	// PendingReviews returns up to limit remediations in pending_review, the
	// longest waiting first.
	PendingReviews(ctx context.Context, limit int) ([]ledger.Remediation, error)
	// Get returns a remediation; an id it does not hold is ledger.ErrNotFound.
	Get(ctx context.Context, id string) (ledger.Remediation, error)
}

// Notifier sends the reviews that wait to Alertmanager, round after round.
type Notifier struct {
	o      Options
	ledger Ledger
	client *client
	log    *slog.Logger
	wake   chan struct{}

	// sent are the alerts of the last rounds, by identity: the firing ones, to
	// resolve them when their review ends (or their severity changes), and the
	// resolved ones, sent again until the firing version would have expired.
	// Only Run's goroutine touches it.
	sent map[string]*sentAlert

	posts  *prometheus.CounterVec
	alerts *prometheus.CounterVec
}

type sentAlert struct {
	id       string // the remediation's
	alert    Alert
	until    time.Time // the EndsAt of its last firing version
	resolved bool
}

// New returns a notifier of the reviews in l. Options errors name the field.
func New(o Options, l Ledger) (*Notifier, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("Options.URLs: required")
	}
	for i, s := range append(slices.Clone(o.URLs), o.ExternalURL) {
		field := fmt.Sprintf("Options.URLs[%d]", i)
		if i == len(o.URLs) {
			field = "Options.ExternalURL"
		}
		if err := CheckURL(s); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	for name, value := range o.Labels {
		if err := CheckLabel(name, value); err != nil {
			return nil, fmt.Errorf("Options.Labels: %w", err)
		}
	}
	switch {
	case o.ResendInterval < 0 || o.EscalateAfter < 0 || o.Timeout < 0 || o.MaxAlerts < 0:
		return nil, errors.New("Options.ResendInterval, EscalateAfter, Timeout, MaxAlerts: negative")
	case o.BearerTokenFile != "" && o.BasicAuthUsername != "":
		return nil, errors.New("Options.BearerTokenFile, Options.BasicAuthUsername: one or the other")
	case (o.BasicAuthUsername == "") != (o.BasicAuthPasswordFile == ""):
		return nil, errors.New("Options.BasicAuthUsername, Options.BasicAuthPasswordFile: both or neither")
	}
	if o.ResendInterval == 0 {
		o.ResendInterval = DefaultResendInterval
	}
	if o.MaxAlerts == 0 {
		o.MaxAlerts = DefaultMaxAlerts
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	o.URLs = slices.Clone(o.URLs)
	return &Notifier{o: o, ledger: l, client: newClient(&o), log: o.Log, wake: make(chan struct{}, 1),
		sent: map[string]*sentAlert{},
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "autofix_alertmanager_posts_total",
			Help: "Posts of alerts to Alertmanager, by result: ok, refused (4xx), failed (5xx), unreachable, credentials."},
			[]string{"result"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "autofix_alertmanager_alerts_total",
			Help: "Alerts Alertmanager took, by state (firing or resolved); each is sent again every resend interval."},
			[]string{"state"}),
	}, nil
}

// CheckURL checks an http:// or https:// base URL without credentials, query or
// fragment. Its errors never repeat the URL (it may hold a password).
func CheckURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.User != nil:
		return errors.New("holds credentials")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme %q, want http or https", u.Scheme)
	case u.Host == "":
		return errors.New("no host")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return errors.New("has a query or fragment; want a base URL")
	}
	return nil
}

// CheckLabel checks a label that Options.Labels adds to every alert: a name as
// Alertmanager takes it ([a-zA-Z_][a-zA-Z0-9_]*, not __reserved), not one of
// ReservedLabels, and a value of printable UTF-8 of at most 253 bytes.
func CheckLabel(name, value string) error {
	switch {
	case !labelName.MatchString(name):
		return fmt.Errorf("%q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)", name)
	case strings.HasPrefix(name, "__"):
		return fmt.Errorf("%q: names that begin with __ are reserved", name)
	case slices.Contains(ReservedLabels(), name):
		return fmt.Errorf("%q is autofix's own label", name)
	case value == "":
		return fmt.Errorf("%q: an empty value", name)
	case labelValue(value) != value:
		return fmt.Errorf("%q: the value has control characters, spaces at an end, or over %d bytes", name, maxLabelValue)
	}
	return nil
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Describe and Collect make the notifier's metrics a prometheus.Collector.
func (n *Notifier) Describe(ch chan<- *prometheus.Desc) { n.posts.Describe(ch); n.alerts.Describe(ch) }

// Collect collects the notifier's metrics.
func (n *Notifier) Collect(ch chan<- prometheus.Metric) { n.posts.Collect(ch); n.alerts.Collect(ch) }

// Wake asks for a round now rather than at the next interval: a review began or
// ended in this process. It never blocks.
func (n *Notifier) Wake() { nudge(n.wake) }

// nudge asks, without blocking, for a round of the loop that reads wake (a channel
// of capacity 1: a nudge already waiting is enough).
func nudge(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// minGap is the least time between two rounds that Wake brings on: a burst of
// decisions makes one round, not one each.
const minGap = time.Second

// rounds calls round at once, then every interval and on a wake (at least minGap
// after it), until ctx ends.
func rounds(ctx context.Context, interval time.Duration, wake <-chan struct{}, round func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		round()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
			select {
			case <-ctx.Done():
				return
			case <-time.After(minGap):
			}
		}
	}
}

// Run sends a round at once and then every ResendInterval (and on Wake), until
// ctx ends. A round that fails is logged and the next one tries again: a failed
// post never holds anything else up. On return nothing is resolved: the alerts of
// the reviews still waiting are another replica's to send, or end on their own.
func (n *Notifier) Run(ctx context.Context) {
	n.log.Info("review alerts to Alertmanager", "alertmanagers", len(n.o.URLs), "resendInterval", n.o.ResendInterval,
		"escalateAfter", n.o.EscalateAfter)
	rounds(ctx, n.o.ResendInterval, n.wake, func() {
		if err := n.round(ctx, time.Now()); err != nil && ctx.Err() == nil {
			n.log.Warn("review alerts", "err", err)
		}
	})
}

// round sends, at now, the alert of every review waiting (up to MaxAlerts) and the
// resolution of those that ended; it returns the first error of the round.
func (n *Notifier) round(ctx context.Context, now time.Time) error {
	batch, err := n.build(ctx, now)
	if err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	// The posts end within two intervals, so that an Alertmanager that takes them
	// and never answers does not hold up the next round for the others, whose
	// copies end three intervals after they were sent.
	pctx, cancel := context.WithTimeout(ctx, (resendMargin-1)*n.o.ResendInterval)
	defer cancel()
	var first error
	for _, err := range n.client.postAll(pctx, batch) {
		n.posts.WithLabelValues(resultOf(err)).Inc()
		if err != nil && first == nil {
			first = err
		}
	}
	if first == nil {
		for _, a := range batch {
			state := "firing"
			if !a.EndsAt.After(now) {
				state = "resolved"
			}
			n.alerts.WithLabelValues(state).Inc()
		}
	}
	return first
}

// build returns the alerts of a round at now and updates what was sent.
func (n *Notifier) build(ctx context.Context, now time.Time) ([]Alert, error) {
	pending, err := n.ledger.PendingReviews(ctx, n.o.MaxAlerts)
	if err != nil {
		return nil, fmt.Errorf("read the reviews: %w", err)
	}
	var batch []Alert
	firing := make(map[string]bool, len(pending))
	waiting := make(map[string]bool, len(pending))
	for i := range pending {
		r := &pending[i]
		a := n.o.firing(r, now)
		k := identity(a.Labels)
		firing[k], waiting[r.EventID] = true, true
		n.sent[k] = &sentAlert{id: r.EventID, alert: a, until: a.EndsAt}
		batch = append(batch, a)
	}
	// The others: in the order of their identities, so that a round is the same
	// whatever the map's order.
	keys := make([]string, 0, len(n.sent))
	for k := range n.sent {
		if !firing[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var lost error
	for _, k := range keys {
		s := n.sent[k]
		if !now.Before(s.until) { // the firing version has expired: Alertmanager resolved it itself
			delete(n.sent, k)
			continue
		}
		if !s.resolved {
			end, resolve, err := n.ended(ctx, s, waiting[s.id], now)
			switch {
			case err != nil:
				lost = err // asked again next round
				continue
			case !resolve:
				delete(n.sent, k)
				continue
			}
			s.resolved, s.alert.EndsAt = true, end
		}
		batch = append(batch, s.alert)
	}
	if lost != nil {
		n.log.Warn("review alerts: could not tell whether a review ended; asking again next round", "err", lost)
	}
	return batch, nil
}

// ended says whether the alert s, firing last round and not this one, is to be
// resolved, and when it ended. Its review still waits (waiting) when only its
// severity changed: it ends now. Otherwise the ledger says: a review decided ended
// when it left pending_review; one gone from the ledger, now; one that still waits but
// was not among this round's MaxAlerts is not resolved (it is not over) but
// forgotten: it expires at its EndsAt unless a later round has room for it.
func (n *Notifier) ended(ctx context.Context, s *sentAlert, waiting bool, now time.Time) (end time.Time, resolve bool, err error) {
	if waiting {
		return now, true, nil
	}
	r, err := n.ledger.Get(ctx, s.id)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return now, true, nil
	case err != nil:
		return time.Time{}, false, fmt.Errorf("remediation %s: %w", s.id, err)
	case r.State == ledger.PendingReview:
		n.log.Debug("review alerts: a review beyond maxAlerts is no longer sent", "remediation", s.id)
		return time.Time{}, false, nil
	}
	// When it left pending_review, from its audit trail; the state's last change
	// is later if it has moved on since (approved, then submitted).
	end = r.UpdatedAt
	for _, e := range r.Audit {
		if e.From == ledger.PendingReview {
			end = e.At
			break
		}
	}
	if end.IsZero() || end.After(now) {
		end = now
	}
	if end.Before(s.alert.StartsAt) { // an alert may not end before it starts
		end = s.alert.StartsAt
	}
	return end.UTC(), true, nil
}

// identity is what makes an alert one to Alertmanager: its labels.
func identity(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	for _, k := range keys {
		b = append(b, k...)
		b = append(b, 0)
		b = append(b, labels[k]...)
		b = append(b, 0)
	}
	return string(b)
}

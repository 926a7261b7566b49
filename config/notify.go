package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/notify"
)

// Notify configures how on-call hears of the fixes that wait for review.
type Notify struct {
	Alertmanager Alertmanager `yaml:"alertmanager"`
	// Webhooks are told when a fix begins to wait for review, when it has waited
	// long, and when its review ends (package notify; docs/api.md, "Webhooks").
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is one receiver of review messages: autofix's signed JSON, or a Slack
// incoming webhook's text. The review links in the messages are under
// http.externalURL, which is then required; the team is the Job label that
// notify.alertmanager.teamLabel names.
type Webhook struct {
	// Name names it in the ledger's delivery records, the metrics and the logs,
	// which never show its URL: [a-z0-9-], at most 63 characters, one per webhook.
	Name string `yaml:"name"`
	// URL is where the messages are posted, http:// or https://; or URLFile holds
	// it, for a URL that is a secret (a Slack webhook's is), read for every post.
	URL     string `yaml:"url"`
	URLFile string `yaml:"urlFile"`
	// Format is json (default: notify.Message, signed) or slack ({"text": ...},
	// which Mattermost and Rocket.Chat take too).
	Format string `yaml:"format"`
	// SecretFile holds the key of the HMAC-SHA256 signature (one line, at least
	// 16 bytes), read for every post; required with the json format.
	SecretFile string `yaml:"secretFile"`
	// Events are the messages sent: pending, escalated, ended (default all).
	Events []string `yaml:"events"`
	// EscalateAfter is how long a review waits before the escalated message
	// (default 30m); 0s: never.
	EscalateAfter *time.Duration `yaml:"escalateAfter"`
	// Timeout bounds one post (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts bounds the posts of one message (default 8, 5s to 10m apart).
	MaxAttempts int `yaml:"maxAttempts"`
	// TLS configures connections to an https:// URL.
	TLS AlertmanagerTLS `yaml:"tls"`
}

// Defaults of a webhook.
const (
	defaultWebhookEscalateAfter = 30 * time.Minute
)

// EscalateAfterOrDefault is EscalateAfter, or its default when it is not set.
func (w *Webhook) EscalateAfterOrDefault() time.Duration {
	if w.EscalateAfter == nil {
		return defaultWebhookEscalateAfter
	}
	return *w.EscalateAfter
}

// Alertmanager sends each fix waiting for review to Alertmanager as an alert, and
// resolves it when the fix is decided (package notify; docs/api.md, "Alerts").
// Without URLs nothing is sent. The review links in the alerts are under
// http.externalURL, which is then required.
type Alertmanager struct {
	// URLs are the Alertmanagers' base URLs, http:// or https:// (a route prefix
	// is kept). List every member of an Alertmanager cluster, as Prometheus does:
	// they do not share alerts, only what they notified, so a load-balanced
	// Service in front of them would let each member's copy lapse and resolve.
	URLs []string `yaml:"urls"`
	// BearerTokenFile holds a token sent as "Authorization: Bearer"; read for
	// every post, so a rotated token is used at once.
	BearerTokenFile string `yaml:"bearerTokenFile"`
	// BasicAuth authenticates with a user name and a password file instead.
	BasicAuth AlertmanagerBasicAuth `yaml:"basicAuth"`
	// TLS configures connections to https:// URLs.
	TLS AlertmanagerTLS `yaml:"tls"`
	// Timeout bounds one post (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// ResendInterval is how often every alert is sent again (default 1m); one that
	// is not sent again ends 3 intervals later (a restart's alerts, for example).
	ResendInterval time.Duration `yaml:"resendInterval"`
	// EscalateAfter is how long a review may wait before its alert's severity goes
	// from warning to critical (default 30m); 0 never raises it.
	EscalateAfter time.Duration `yaml:"escalateAfter"`
	// MaxAlerts bounds the reviews alerted, the longest waiting first (default 200).
	MaxAlerts int `yaml:"maxAlerts"`
	// TeamLabel is the label of the failed Jobs whose value becomes the alerts'
	// team label (default "team"); empty: no team label.
	TeamLabel string `yaml:"teamLabel"`
	// Labels are added to every alert, e.g. {cluster: prod-eu}; they may not name
	// autofix's own labels (notify.ReservedLabels).
	Labels map[string]string `yaml:"labels"`
}

// AlertmanagerBasicAuth is HTTP basic authentication to the Alertmanagers.
type AlertmanagerBasicAuth struct {
	Username string `yaml:"username"`
	// PasswordFile holds the password (one trailing newline is dropped); read for
	// every post. There is no password field.
	PasswordFile string `yaml:"passwordFile"`
}

// AlertmanagerTLS configures TLS to https:// Alertmanagers.
type AlertmanagerTLS struct {
	// CAFile is a PEM bundle of the CAs that sign their certificates; empty trusts
	// the system's roots.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are a client certificate and its key (both or neither),
	// read again whenever they change.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName is the name their certificates must carry; empty: each URL's host.
	ServerName string `yaml:"serverName"`
	// InsecureSkipVerify accepts any certificate: encrypted, not authenticated. For
	// a test setup only.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify"`
}

func defaultNotify() Notify {
	return Notify{Alertmanager: Alertmanager{Timeout: notify.DefaultTimeout, ResendInterval: notify.DefaultResendInterval,
		EscalateAfter: 30 * time.Minute, MaxAlerts: notify.DefaultMaxAlerts, TeamLabel: "team"}}
}

// validate checks notify, reading the files it names; errors name the field and
// never show a secret. externalURL is http.externalURL.
func (n *Notify) validate(externalURL string) error {
	if err := n.validateAlertmanager(externalURL); err != nil {
		return err
	}
	names := map[string]int{}
	for i := range n.Webhooks {
		w := &n.Webhooks[i]
		p := fmt.Sprintf("notify.webhooks[%d].", i)
		if j, dup := names[w.Name]; dup {
			return fmt.Errorf(p+"name: %q is notify.webhooks[%d]'s too", w.Name, j)
		}
		names[w.Name] = i
		if err := w.validate(p); err != nil {
			return err
		}
		if externalURL == "" {
			return errors.New("http.externalURL: required with notify.webhooks: the messages' review links point there")
		}
	}
	return nil
}

// validate checks w, reading the files it names; errors begin with p and never show
// its URL or secret.
func (w *Webhook) validate(p string) error {
	switch {
	case !notify.ValidWebhookName(w.Name):
		return fmt.Errorf(p+"name: %q, want [a-z0-9-] of at most 63 characters, beginning and ending with a letter or digit", w.Name)
	case w.URL == "" && w.URLFile == "":
		return errors.New(p + "url: required (or urlFile)")
	case w.URL != "" && w.URLFile != "":
		return errors.New(p + "url, " + p + "urlFile: one or the other")
	case w.Format != "" && w.Format != notify.FormatJSON && w.Format != notify.FormatSlack:
		return fmt.Errorf(p+"format: %q, want json or slack", w.Format)
	case w.Format != notify.FormatSlack && w.SecretFile == "":
		return errors.New(p + "secretFile: required with the json format: receivers verify the signature with it")
	case w.EscalateAfter != nil && *w.EscalateAfter < 0:
		return fmt.Errorf(p+"escalateAfter: %s, want 0s (never) or more", *w.EscalateAfter)
	case w.Timeout != 0 && (w.Timeout < 100*time.Millisecond || w.Timeout > time.Minute):
		return fmt.Errorf(p+"timeout: %s, want 100ms to 1m", w.Timeout)
	case w.MaxAttempts < 0 || w.MaxAttempts > 20:
		return fmt.Errorf(p+"maxAttempts: %d, want 1 to 20 (0: 8)", w.MaxAttempts)
	}
	for _, e := range w.Events {
		if !ledger.DeliveryKind(e).Valid() {
			return fmt.Errorf(p+"events: %q, want pending, escalated or ended", e)
		}
	}
	u := w.URL
	if w.URLFile != "" {
		var err error
		if u, err = notify.ReadWebhookURL(w.URLFile); err != nil {
			return fmt.Errorf(p+"urlFile: %w", err)
		}
	} else if err := notify.CheckWebhookURL(u); err != nil {
		return fmt.Errorf(p+"url: %w", err)
	}
	https := strings.HasPrefix(u, "https://")
	if !https && w.TLS != (AlertmanagerTLS{}) && w.URLFile == "" {
		return errors.New(p + "tls: set, but the url is not https://")
	}
	if _, err := w.ClientTLS(p + "tls"); err != nil {
		return err
	}
	if w.SecretFile != "" {
		if _, err := notify.ReadWebhookSecret(w.SecretFile); err != nil {
			return fmt.Errorf(p+"secretFile: %w", err)
		}
	}
	return nil
}

// ClientTLS returns the TLS configuration of posts to w's https:// URL, nil for the
// defaults; errors begin with field (notify.webhooks[i].tls).
func (w *Webhook) ClientTLS(field string) (*tls.Config, error) {
	if w.TLS == (AlertmanagerTLS{}) {
		return nil, nil
	}
	return clientTLS(field, w.TLS.CAFile, w.TLS.CertFile, w.TLS.KeyFile, w.TLS.ServerName, w.TLS.InsecureSkipVerify)
}

// validateAlertmanager checks notify.alertmanager.
func (n *Notify) validateAlertmanager(externalURL string) error {
	a := &n.Alertmanager
	const p = "notify.alertmanager."
	switch {
	case a.Timeout < 100*time.Millisecond || a.Timeout > time.Minute:
		return fmt.Errorf(p+"timeout: %s, want 100ms to 1m", a.Timeout)
	case a.ResendInterval < time.Second || a.ResendInterval > time.Hour:
		return fmt.Errorf(p+"resendInterval: %s, want 1s to 1h", a.ResendInterval)
	case a.EscalateAfter < 0:
		return fmt.Errorf(p+"escalateAfter: %s, want 0 (never) or more", a.EscalateAfter)
	case a.MaxAlerts < 1 || a.MaxAlerts > 1000:
		return fmt.Errorf(p+"maxAlerts: %d, want 1 to 1000", a.MaxAlerts)
	}
	if a.TeamLabel != "" {
		if errs := validation.IsQualifiedName(a.TeamLabel); len(errs) > 0 {
			return fmt.Errorf(p+"teamLabel: %q is not a label key: %s", a.TeamLabel, errs[0])
		}
	}
	names := make([]string, 0, len(a.Labels))
	for name := range a.Labels {
		names = append(names, name)
	}
	slices.Sort(names) // the first problem, the same every time
	for _, name := range names {
		if err := notify.CheckLabel(name, a.Labels[name]); err != nil {
			return fmt.Errorf(p+"labels: %w", err)
		}
	}
	if len(a.URLs) == 0 {
		for _, f := range []struct{ name, value string }{{"bearerTokenFile", a.BearerTokenFile},
			{"basicAuth.username", a.BasicAuth.Username}, {"basicAuth.passwordFile", a.BasicAuth.PasswordFile},
			{"tls.caFile", a.TLS.CAFile}, {"tls.certFile", a.TLS.CertFile}, {"tls.keyFile", a.TLS.KeyFile},
			{"tls.serverName", a.TLS.ServerName}} {
			if f.value != "" {
				return fmt.Errorf(p+"%s: set, but notify.alertmanager.urls is empty", f.name)
			}
		}
		if a.TLS.InsecureSkipVerify {
			return errors.New(p + "tls.insecureSkipVerify: set, but notify.alertmanager.urls is empty")
		}
		return nil
	}
	if externalURL == "" {
		return errors.New("http.externalURL: required with notify.alertmanager.urls: the alerts' review links point there")
	}
	for i, s := range a.URLs {
		if err := notify.CheckURL(s); err != nil {
			return fmt.Errorf(p+"urls[%d]: %w", i, err)
		}
	}
	https := a.HasHTTPS()
	if !https && a.TLS != (AlertmanagerTLS{}) {
		return errors.New(p + "tls: set, but no URL of notify.alertmanager.urls is https://")
	}
	if _, err := a.TLS.ClientConfig(https); err != nil {
		return err
	}
	b := &a.BasicAuth
	switch {
	case a.BearerTokenFile != "" && (b.Username != "" || b.PasswordFile != ""):
		return errors.New(p + "bearerTokenFile, " + p + "basicAuth: one or the other")
	case b.Username == "" && b.PasswordFile != "":
		return errors.New(p + "basicAuth.username: required with " + p + "basicAuth.passwordFile")
	case b.Username != "" && b.PasswordFile == "":
		return errors.New(p + "basicAuth.passwordFile: required with " + p + "basicAuth.username")
	case a.BearerTokenFile != "":
		return checkSecretFile(p+"bearerTokenFile", a.BearerTokenFile)
	case b.PasswordFile != "":
		return checkSecretFile(p+"basicAuth.passwordFile", b.PasswordFile)
	}
	return nil
}

// ClientConfig returns the TLS configuration of connections to the Alertmanagers,
// nil when none is https (https false). It reads CAFile, and CertFile and KeyFile
// (again whenever they change); errors name the field.
func (t *AlertmanagerTLS) ClientConfig(https bool) (*tls.Config, error) {
	if !https {
		return nil, nil
	}
	return clientTLS("notify.alertmanager.tls", t.CAFile, t.CertFile, t.KeyFile, t.ServerName, t.InsecureSkipVerify)
}

// HasHTTPS reports whether one of the URLs is https://.
func (a *Alertmanager) HasHTTPS() bool {
	for _, s := range a.URLs {
		if u, err := url.Parse(s); err == nil && u.Scheme == "https" {
			return true
		}
	}
	return false
}

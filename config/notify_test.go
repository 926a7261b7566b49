package config

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNotifyDefaults(t *testing.T) {
	a := Default().Notify.Alertmanager
	if a.URLs != nil || a.Timeout != 10*time.Second || a.ResendInterval != time.Minute || a.EscalateAfter != 30*time.Minute ||
		a.MaxAlerts != 200 || a.TeamLabel != "team" {
		t.Errorf("Default().Notify.Alertmanager = %+v, want no URLs, 10s, 1m, 30m, 200, team", a)
	}
}

func TestNotifyFromFileAndEnvironment(t *testing.T) {
	c, err := Load("testdata/full.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	a := c.Notify.Alertmanager
	if len(a.URLs) != 2 || a.BearerTokenFile != "testdata/metrics-token" || a.Timeout != 5*time.Second ||
		a.ResendInterval != 30*time.Second || a.EscalateAfter != 20*time.Minute || a.MaxAlerts != 100 ||
		a.TeamLabel != "example.com/team" || !maps.Equal(a.Labels, map[string]string{"cluster": "prod-eu"}) ||
		c.HTTP.ExternalURL != "https://autofix.example.com" {
		t.Errorf("notify.alertmanager = %+v, http.externalURL %q: the file's values not applied", a, c.HTTP.ExternalURL)
	}
	hooks := c.Notify.Webhooks
	if len(hooks) != 2 || hooks[0].Name != "oncall" || hooks[0].EscalateAfterOrDefault() != 15*time.Minute ||
		hooks[0].MaxAttempts != 6 || !slices.Equal(hooks[0].Events, []string{"pending", "escalated", "ended"}) ||
		hooks[1].Format != "slack" || hooks[1].URLFile != "testdata/slack-url" || hooks[1].EscalateAfterOrDefault() != 0 {
		t.Errorf("notify.webhooks = %+v: the file's values not applied", hooks)
	}
	if d := (&Webhook{}).EscalateAfterOrDefault(); d != 30*time.Minute {
		t.Errorf("a webhook's default escalateAfter = %s, want 30m", d)
	}
	c, err = Load("", env(map[string]string{"AUTOFIX_ALERTMANAGER_URLS": "http://am-0:9093, http://am-1:9093",
		"AUTOFIX_EXTERNAL_URL": "https://autofix.internal"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if got := c.Notify.Alertmanager.URLs; !slices.Equal(got, []string{"http://am-0:9093", "http://am-1:9093"}) ||
		c.HTTP.ExternalURL != "https://autofix.internal" {
		t.Errorf("URLs %q, externalURL %q: want the environment's", got, c.HTTP.ExternalURL)
	}
}

func TestNotifyInvalid(t *testing.T) {
	dir := t.TempDir()
	write := fileWriter(t, dir)
	token := write("token", "hunter2\n")
	empty := write("empty", "")
	const ok = "urls: [http://am:9093]\n"
	tests := []struct{ name, yaml, externalURL, want string }{
		{"no external URL", ok, "", "http.externalURL: required with notify.alertmanager.urls"},
		{"a bad external URL", ok, "ftp://autofix", `http.externalURL: scheme "ftp"`},
		{"credentials in the external URL", ok, "https://u:hunter2@autofix", "http.externalURL: holds credentials"},
		{"credentials in a URL", "urls: [http://am:9093, 'http://u:hunter2@am-1:9093']", "", "notify.alertmanager.urls[1]: holds credentials"},
		{"a URL with a query", "urls: ['http://am:9093/?x=1']", "", "notify.alertmanager.urls[0]: has a query"},
		{"no host", "urls: ['http://']", "", "notify.alertmanager.urls[0]: no host"},
		{"a token without URLs", "bearerTokenFile: " + token, "", "notify.alertmanager.bearerTokenFile: set, but notify.alertmanager.urls is empty"},
		{"TLS without URLs", "tls: {insecureSkipVerify: true}", "", "notify.alertmanager.tls.insecureSkipVerify: set, but"},
		{"TLS for http", ok + "tls: {serverName: am}", "", "notify.alertmanager.tls: set, but no URL of notify.alertmanager.urls is https://"},
		{"a missing CA", "urls: [https://am:9093]\ntls: {caFile: " + filepath.Join(dir, "nope") + "}", "", "notify.alertmanager.tls.caFile:"},
		{"both kinds of auth", ok + "bearerTokenFile: " + token + "\nbasicAuth: {username: u, passwordFile: " + token + "}", "",
			"notify.alertmanager.bearerTokenFile, notify.alertmanager.basicAuth: one or the other"},
		{"a user without a password", ok + "basicAuth: {username: u}", "", "notify.alertmanager.basicAuth.passwordFile: required"},
		{"a password without a user", ok + "basicAuth: {passwordFile: " + token + "}", "", "notify.alertmanager.basicAuth.username: required"},
		{"a missing token file", ok + "bearerTokenFile: " + filepath.Join(dir, "nope"), "", "notify.alertmanager.bearerTokenFile:"},
		{"an empty password file", ok + "basicAuth: {username: u, passwordFile: " + empty + "}", "", "notify.alertmanager.basicAuth.passwordFile:"},
		{"a short timeout", "timeout: 1ms", "", "notify.alertmanager.timeout: 1ms"},
		{"a long resend interval", "resendInterval: 2h", "", "notify.alertmanager.resendInterval: 2h0m0s"},
		{"a negative escalation", "escalateAfter: -1m", "", "notify.alertmanager.escalateAfter: -1m0s"},
		{"no alerts", "maxAlerts: 0", "", "notify.alertmanager.maxAlerts: 0"},
		{"a bad team label", "teamLabel: 'team name'", "", `notify.alertmanager.teamLabel: "team name" is not a label key`},
		{"a reserved label", "labels: {severity: page}", "", `notify.alertmanager.labels: "severity" is autofix's own label`},
		{"a bad label name", "labels: {cluster-name: x}", "", `notify.alertmanager.labels: "cluster-name" is not a label name`},
		{"an empty label value", "labels: {cluster: ''}", "", `notify.alertmanager.labels: "cluster": an empty value`},
		{"an unknown field", "password: hunter2", "", "field password not found"},
		{"a single url", "url: http://am:9093", "", "field url not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := "notify:\n  alertmanager:\n    " + strings.ReplaceAll(tt.yaml, "\n", "\n    ") + "\n"
			if tt.externalURL != "" {
				yaml += "http: {externalURL: '" + tt.externalURL + "'}\n"
			} else if !strings.Contains(tt.want, "externalURL") {
				yaml += "http: {externalURL: 'https://autofix.example.com'}\n"
			}
			c, err := Load(write("c.yaml", yaml), env(nil))
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Load+Validate = %v, want an error containing %q, without the secret", err, tt.want)
			}
		})
	}
}

// TestExternalURLAlone: http.externalURL is checked even without alerts.
func TestExternalURLAlone(t *testing.T) {
	c := Default()
	c.HTTP.ExternalURL = "autofix.example.com"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `http.externalURL: scheme ""`) {
		t.Errorf("Validate() with a URL without a scheme = %v, want http.externalURL: scheme", err)
	}
}

func TestWebhooksInvalid(t *testing.T) {
	dir := t.TempDir()
	write := fileWriter(t, dir)
	secret := write("secret", "hunter2-and-then-some\n")
	short := write("short", "hunter2\n")
	badURL := write("bad-url", "http://u:hunter2@hooks.example/x\n")
	const ok = "{name: oncall, url: 'https://hooks.example/x', secretFile: " + "SECRET"
	tests := []struct{ name, hooks, externalURL, want string }{
		{"no external URL", "[" + ok + "}]", "", "http.externalURL: required with notify.webhooks"},
		{"no name", "[{url: 'https://hooks.example/x', format: slack}]", "x", `notify.webhooks[0].name: ""`},
		{"a bad name", "[{name: On_Call, url: 'https://hooks.example/x', format: slack}]", "x", `notify.webhooks[0].name: "On_Call"`},
		{"two of one name", "[" + ok + "}, " + ok + "}]", "x", `notify.webhooks[1].name: "oncall" is notify.webhooks[0]'s too`},
		{"no URL", "[{name: a, format: slack}]", "x", "notify.webhooks[0].url: required (or urlFile)"},
		{"both URLs", "[{name: a, format: slack, url: 'https://h/x', urlFile: " + secret + "}]", "x", "notify.webhooks[0].url, notify.webhooks[0].urlFile: one or the other"},
		{"credentials in the URL", "[{name: a, format: slack, url: 'https://u:hunter2@h/x'}]", "x", "notify.webhooks[0].url: holds credentials"},
		{"credentials in the URL file", "[{name: a, format: slack, urlFile: " + badURL + "}]", "x", "notify.webhooks[0].urlFile: holds credentials"},
		{"a missing URL file", "[{name: a, format: slack, urlFile: " + filepath.Join(dir, "nope") + "}]", "x", "notify.webhooks[0].urlFile:"},
		{"another format", "[{name: a, format: teams, url: 'https://h/x'}]", "x", `notify.webhooks[0].format: "teams"`},
		{"json without a secret", "[{name: a, url: 'https://h/x'}]", "x", "notify.webhooks[0].secretFile: required with the json format"},
		{"a short secret", "[{name: a, url: 'https://h/x', secretFile: " + short + "}]", "x", "notify.webhooks[0].secretFile: 7 bytes, want at least 16"},
		{"a missing secret file", "[{name: a, url: 'https://h/x', secretFile: " + filepath.Join(dir, "nope") + "}]", "x", "notify.webhooks[0].secretFile:"},
		{"another event", "[" + ok + ", events: [approved]}]", "x", `notify.webhooks[0].events: "approved"`},
		{"a negative escalation", "[" + ok + ", escalateAfter: -1m}]", "x", "notify.webhooks[0].escalateAfter: -1m0s"},
		{"a long timeout", "[" + ok + ", timeout: 2m}]", "x", "notify.webhooks[0].timeout: 2m0s"},
		{"too many attempts", "[" + ok + ", maxAttempts: 100}]", "x", "notify.webhooks[0].maxAttempts: 100"},
		{"TLS for http", "[{name: a, format: slack, url: 'http://h/x', tls: {serverName: h}}]", "x", "notify.webhooks[0].tls: set, but the url is not https://"},
		{"a missing CA", "[{name: a, format: slack, url: 'https://h/x', tls: {caFile: " + filepath.Join(dir, "nope") + "}}]", "x", "notify.webhooks[0].tls.caFile:"},
		{"an unknown field", "[" + ok + ", secret: hunter2}]", "x", "field secret not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := "notify:\n  webhooks: " + strings.ReplaceAll(tt.hooks, "SECRET", secret) + "\n"
			if tt.externalURL != "" {
				yaml += "http: {externalURL: 'https://autofix.example.com'}\n"
			}
			c, err := Load(write("c.yaml", yaml), env(nil))
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Load+Validate = %v, want an error containing %q, without the secret", err, tt.want)
			}
		})
	}
}

// fileWriter returns a function that writes a file of dir, readable by its owner
// only, and returns its path.
func fileWriter(t *testing.T, dir string) func(name, content string) string {
	return func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

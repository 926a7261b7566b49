package notify

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// What scrub hides: the shapes credentials take in a log line. A failure's evidence
// line is text a job printed, and a job may print its own secrets; what autofix
// sends to Alertmanager and to webhooks is read by more people than the job's logs.
var secretShapes = []struct {
	re   *regexp.Regexp
	with string
}{
	// A PEM private key, escaped onto one line (a service account's JSON).
	{regexp.MustCompile(`-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)`), "[redacted]"},
	// key=value and key: value, for the names secrets go by: words joined by _ or
	// -, or glued (PGPASSWORD, camelCase accessToken); a quoted value whole.
	{regexp.MustCompile(`(?i)\b(` + hiddenName + `)(["']?\s*[:=]\s*)(` + hiddenValue + `)`), "${1}${2}[redacted]"},
	// --password value, on a command line.
	{regexp.MustCompile(`(?i)((?:^|\s)--` + hiddenName + `)(\s+)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s"'-][^\s"']*)`), "${1}${2}[redacted]"},
	// An Authorization header's value, whatever its scheme, and bearer tokens
	// anywhere.
	{regexp.MustCompile(`(?i)\b(bearer|basic)\s+[a-z0-9._~+/=-]{8,}`), "${1} [redacted]"},
	{regexp.MustCompile(`(?i)\b((?:proxy-)?authorization["']?\s*[:=]\s*["']?(?:[a-z0-9_-]+\s+)?)[^\s"',;]+`), "${1}[redacted]"},
	// user:password@ in a URL (the user may be empty: redis://:password@), or a
	// token as the user (https://<token>@github.com).
	{regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://)(?:[^/\s:@]*:[^/\s@]+|[^/\s:@]{16,})@`), "${1}[redacted]@"},
	// Tokens recognisable by their prefix: AWS access key ids, GitHub, GitLab,
	// Slack, Hugging Face, OpenAI-style, Stripe, Google API, npm and PyPI keys;
	// and JSON web tokens.
	{regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`), "[redacted]"},
	{regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|` +
		`xox[abprse]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}|hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}|` +
		`[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|AIza[0-9A-Za-z_-]{35}|npm_[A-Za-z0-9]{36}|pypi-[A-Za-z0-9_-]{50,})`), "[redacted]"},
	{regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+`), "[redacted]"},
}

// hiddenName is the name of a setting that holds a secret; "pass" only as its last
// word (DB_PASS), so that bypass_cache and pass_rate are not.
const hiddenName = `(?:[a-z0-9]+[_-])*(?:[a-z0-9]*(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|` +
	`private[_-]?key|credentials?|auth|cookie)(?:[_-][a-z0-9]+)*|pass)`

// hiddenValue is its value: quoted, to the closing quote; or to a space or a
// separator.
const hiddenValue = `"(?:[^"\\]|\\.)*"|'[^']*'|[^\s"',;&]+`

// scrub returns s with what looks like a credential replaced by "[redacted]". It is
// a net for the common shapes, not a guarantee: the evidence sent is one clipped line,
// never more of the log.
func scrub(s string) string {
	for _, sh := range secretShapes {
		s = sh.re.ReplaceAllString(s, sh.with)
	}
	return s
}

// minURLPart is the shortest part of a webhook's URL that withoutURL hides: shorter
// ones ("api", "v1") are no key, and hiding them would garble the rest.
const minURLPart = 8

// withoutURL returns s, a receiver's answer, without what of target, the URL it
// was posted to, could be a secret: the URL itself, its path and query, and each
// part of them (a path segment, a query value) of minURLPart bytes or more, the
// way a chat webhook's key is. A receiver's error page may repeat the request
// ("Cannot POST /services/T0/B0/key"), and what it says ends up in the ledger and
// the log.
func withoutURL(s, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return "[answer hidden: the URL is not one]"
	}
	parts := []string{target, u.RequestURI(), u.EscapedPath(), u.Path, u.RawQuery}
	for _, p := range []string{u.Path, u.EscapedPath()} {
		parts = append(parts, strings.Split(p, "/")...)
	}
	for _, p := range strings.Split(u.RawQuery, "&") {
		_, v, _ := strings.Cut(p, "=")
		parts = append(parts, p, v)
		if uv, err := url.QueryUnescape(v); err == nil {
			parts = append(parts, uv)
		}
	}
	// The longest first, so that a part of a longer one hidden first leaves no
	// piece of it.
	slices.SortFunc(parts, func(a, b string) int { return len(b) - len(a) })
	for _, p := range parts {
		if len(p) >= minURLPart {
			s = strings.ReplaceAll(s, p, "[url]")
		}
	}
	return s
}

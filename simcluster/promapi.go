package simcluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MetricsAPI serves the part of Prometheus's HTTP API that package telemetry uses,
// over the series the simulated nodes expose for their pods (MetricMemory,
// MetricGPUMemory, MetricStorage): instant queries, GET or POST /api/v1/query, of
//
//	max(max_over_time(METRIC{LABEL="v",LABEL=~"re",...}[Ns]))
//
// at a time (unix seconds or RFC 3339; default now), answered as Prometheus answers
// them (a vector of one sample, or none). Any other query is refused (400,
// bad_data): it is a stand-in for Prometheus, not one.
func (c *Cluster) MetricsAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", c.serveQuery)
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) })
	return mux
}

// maxQueryBody bounds a query request's form.
const maxQueryBody = 64 << 10

func (c *Cluster) serveQuery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		promError(w, http.StatusMethodNotAllowed, "bad_data", "method not allowed")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxQueryBody)
	if err := r.ParseForm(); err != nil {
		promError(w, http.StatusBadRequest, "bad_data", "invalid form: "+err.Error())
		return
	}
	q, err := parseQuery(r.Form.Get("query"))
	if err != nil {
		promError(w, http.StatusBadRequest, "bad_data", err.Error())
		return
	}
	at := time.Now()
	if s := r.Form.Get("time"); s != "" {
		if at, err = parseTime(s); err != nil {
			promError(w, http.StatusBadRequest, "bad_data", `invalid parameter "time": `+err.Error())
			return
		}
	}
	value, found := c.kubelet.evaluate(q, at)
	result := []any{}
	if found {
		ts := float64(at.UnixMilli()) / 1000
		result = append(result, map[string]any{"metric": map[string]string{},
			"value": []any{ts, strconv.FormatFloat(value, 'f', -1, 64)}})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success",
		"data": map[string]any{"resultType": "vector", "result": result}})
}

func promError(w http.ResponseWriter, status int, kind, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": kind, "error": msg})
}

// parseTime reads a query's time as Prometheus does: unix seconds (with a
// fraction), or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e11 {
			return time.Time{}, fmt.Errorf("%q is not a time", s)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time", s)
	}
	return t, nil
}

// evaluate is the highest sample of q's series within its range before at (and
// whether there was one).
func (k *Kubelet) evaluate(q promQuery, at time.Time) (float64, bool) {
	from := at.Add(-time.Duration(q.rangeSeconds) * time.Second)
	k.mu.Lock()
	defer k.mu.Unlock()
	best, found := 0.0, false
	for _, u := range k.usage {
		if !u.during(from, at) {
			continue
		}
		for _, s := range u.seriesOf(q.metric) {
			if q.matches(s.labels) && (!found || s.value > best) {
				best, found = s.value, true
			}
		}
	}
	return best, found
}

// promQuery is a parsed max(max_over_time(METRIC{MATCHERS}[Ns])).
type promQuery struct {
	metric       string
	matchers     []matcher
	rangeSeconds int64
}

// matcher is LABEL="value" (or =~ "regexp", re set).
type matcher struct {
	label, value string
	re           *regexp.Regexp
}

// matches reports whether labels (a label not there is "") match every matcher.
func (q promQuery) matches(labels map[string]string) bool {
	for _, m := range q.matchers {
		v := labels[m.label]
		if m.re != nil && !m.re.MatchString(v) || m.re == nil && v != m.value {
			return false
		}
	}
	return true
}

var (
	metricNameRe = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`)
	labelNameRe  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*`)
)

// maxQuery bounds the length of a query, in bytes; maxRangeSeconds its range.
const (
	maxQuery        = 32 << 10
	maxRangeSeconds = 400 * 24 * 3600
)

// parseQuery reads a query of the one shape MetricsAPI answers. It allows no
// spaces (telemetry writes none) and reads strings as PromQL does (double-quoted,
// with Go's escapes).
func parseQuery(s string) (promQuery, error) {
	var q promQuery
	if len(s) > maxQuery {
		return q, fmt.Errorf("query of %d bytes, over %d", len(s), maxQuery)
	}
	rest, ok := strings.CutPrefix(s, "max(max_over_time(")
	if !ok {
		return q, errors.New("want max(max_over_time(METRIC{...}[Ns]))")
	}
	q.metric = metricNameRe.FindString(rest)
	if q.metric == "" {
		return q, errors.New("want a metric name after max(max_over_time(")
	}
	rest = rest[len(q.metric):]
	if rest, ok = strings.CutPrefix(rest, "{"); !ok {
		return q, errors.New("want { after the metric name")
	}
	for !strings.HasPrefix(rest, "}") {
		if len(q.matchers) > 0 {
			if rest, ok = strings.CutPrefix(rest, ","); !ok {
				return q, errors.New("want , or } after a matcher")
			}
		}
		var m matcher
		var err error
		if m, rest, err = parseMatcher(rest); err != nil {
			return q, err
		}
		q.matchers = append(q.matchers, m)
	}
	rest = rest[1:]
	if rest, ok = strings.CutPrefix(rest, "["); !ok {
		return q, errors.New("want [ after }")
	}
	digits, after, ok := strings.Cut(rest, "s]))")
	if !ok || after != "" {
		return q, errors.New("want [Ns])) at the end")
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 1 || n > maxRangeSeconds || strings.TrimLeft(digits, "0123456789") != "" {
		return q, fmt.Errorf("range %q: want whole seconds, 1 to %d", digits, maxRangeSeconds)
	}
	q.rangeSeconds = n
	return q, nil
}

// parseMatcher reads LABEL="..." or LABEL=~"..." at the start of s, and returns
// the rest.
func parseMatcher(s string) (matcher, string, error) {
	var m matcher
	m.label = labelNameRe.FindString(s)
	if m.label == "" {
		return m, "", errors.New("want a label name in {...}")
	}
	s = s[len(m.label):]
	regex := strings.HasPrefix(s, "=~")
	switch {
	case regex:
		s = s[2:]
	case strings.HasPrefix(s, "="):
		s = s[1:]
	default:
		return m, "", fmt.Errorf("label %s: want = or =~", m.label)
	}
	lit, rest, err := cutString(s)
	if err != nil {
		return m, "", fmt.Errorf("label %s: %w", m.label, err)
	}
	m.value = lit
	if regex {
		if m.re, err = regexp.Compile("^(?:" + lit + ")$"); err != nil {
			return m, "", fmt.Errorf("label %s: %w", m.label, err)
		}
	}
	return m, rest, nil
}

// cutString reads the double-quoted string at the start of s (Go's escapes) and
// returns its value and the rest.
func cutString(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", errors.New(`want a "string"`)
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // the escaped character is not the end
		case '"':
			v, err := strconv.Unquote(s[:i+1])
			if err != nil {
				return "", "", fmt.Errorf("string %s: %w", s[:i+1], err)
			}
			return v, s[i+1:], nil
		case '\n':
			return "", "", errors.New("a newline in a string")
		}
	}
	return "", "", errors.New("a string without its closing quote")
}

package telemetry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/autofix/autofix/failure"
)

// Options configure a Source.
type Options struct {
	// URL is the Prometheus server's base URL (http or https; a path prefix is kept),
	// e.g. http://prometheus-k8s.monitoring.svc:9090. It holds no credentials.
	URL string
	// TLS configures connections to an https URL; nil: the system's roots.
	TLS *tls.Config
	// BearerTokenFile, if set, holds a token sent as "Authorization: Bearer" to URL's
	// host; it is read for every request, so a rotated token is used at once.
	BearerTokenFile string
	// BasicAuthUsername and BasicAuthPasswordFile, if set, authenticate with HTTP
	// basic authentication instead; the password file is read for every request.
	BasicAuthUsername     string
	BasicAuthPasswordFile string
	// Timeout bounds one lookup, its queries together (default 2 s).
	Timeout time.Duration
	// FailureThreshold is how many lookups in a row may fail (no answer in time, no
	// connection, a server error) before lookups are short-circuited (default 3).
	FailureThreshold int
	// Cooldown is how long they are short-circuited before one tries again (default
	// 1 minute).
	Cooldown time.Duration
	// Memory, GPUMemory and EphemeralStorage are the series of the three peaks; one
	// without a metric is not looked up.
	Memory, GPUMemory, EphemeralStorage Series
	Log                                 *slog.Logger
}

// ErrShortCircuited is the error of a lookup not made because Prometheus failed
// the ones before it (Options.FailureThreshold) less than Options.Cooldown ago.
var ErrShortCircuited = errors.New("telemetry: lookup skipped: Prometheus failed the lookups before it; trying again after the cooldown")

// Source looks up the peaks of runs in Prometheus. It is safe for concurrent use.
type Source struct {
	o       Options
	api     v1.API
	breaker breaker
	now     func() time.Time

	mu     sync.Mutex
	warned map[string]time.Time // when a refused answer was last logged, by peak
}

// New returns a Source for o. It does not connect: the first lookup does.
func New(o Options) (*Source, error) {
	u, err := url.Parse(o.URL)
	switch {
	case err != nil || o.URL == "":
		return nil, errors.New("Options.URL: not a URL") // the parser's error would repeat it
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("Options.URL: scheme %q, want http or https", u.Scheme)
	case u.Host == "":
		return nil, errors.New("Options.URL: no host")
	case u.User != nil:
		return nil, errors.New("Options.URL: holds credentials; use BearerTokenFile or BasicAuthUsername and BasicAuthPasswordFile")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("Options.URL: a query or fragment; want the server's base URL")
	case o.TLS != nil && u.Scheme != "https":
		return nil, errors.New("Options.TLS: set for an http URL")
	case o.BearerTokenFile != "" && (o.BasicAuthUsername != "" || o.BasicAuthPasswordFile != ""):
		return nil, errors.New("Options.BearerTokenFile, Options.BasicAuthUsername: one or the other")
	case (o.BasicAuthUsername == "") != (o.BasicAuthPasswordFile == ""):
		return nil, errors.New("Options.BasicAuthUsername, Options.BasicAuthPasswordFile: both or neither")
	case o.Timeout < 0 || o.FailureThreshold < 0 || o.Cooldown < 0:
		return nil, errors.New("Options.Timeout, FailureThreshold, Cooldown: negative")
	}
	for _, s := range []struct {
		field  string
		series Series
	}{{"Memory", o.Memory}, {"GPUMemory", o.GPUMemory}, {"EphemeralStorage", o.EphemeralStorage}} {
		if err := s.series.Validate(); err != nil {
			return nil, fmt.Errorf("Options.%s.%w", s.field, err)
		}
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.FailureThreshold == 0 {
		o.FailureThreshold = 3
	}
	if o.Cooldown == 0 {
		o.Cooldown = time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	base := HTTP1Transport(o.TLS, 4)
	hc := &http.Client{Transport: &transport{base: base, target: u, bearerFile: o.BearerTokenFile,
		username: o.BasicAuthUsername, passwdFile: o.BasicAuthPasswordFile}}
	c, err := api.NewClient(api.Config{Address: o.URL, Client: hc})
	if err != nil {
		return nil, fmt.Errorf("Options.URL: %w", err)
	}
	return &Source{o: o, api: v1.NewAPI(c), breaker: breaker{threshold: o.FailureThreshold, cooldown: o.Cooldown},
		now: time.Now, warned: map[string]time.Time{}}, nil
}

// Usage looks up the peaks of q's run. A peak without a series (or a sample) in the
// run, or whose sample fails its checks (BadValueError), is left 0: unknown. It
// returns within Options.Timeout, and at once while lookups are short-circuited
// (ErrShortCircuited); the error says why peaks are missing, with what was found.
func (s *Source) Usage(ctx context.Context, q Query) (failure.Usage, error) {
	var u failure.Usage
	if err := q.check(); err != nil {
		return u, fmt.Errorf("telemetry: query: %w", err)
	}
	memBound, gpuBound, diskBound := bounds(&q)
	type lookup struct {
		peak   string
		series Series
		bound  int64
		into   *int64
	}
	var lookups []lookup
	for _, l := range []lookup{
		{"memory", s.o.Memory, memBound, &u.PeakMemoryBytes},
		{"gpuMemory", s.o.GPUMemory, gpuBound, &u.PeakGPUMemoryBytes},
		{"ephemeralStorage", s.o.EphemeralStorage, diskBound, &u.PeakEphemeralStorageBytes},
	} {
		if l.series.Metric != "" && (l.peak != "gpuMemory" || q.GPUs > 0) {
			lookups = append(lookups, l)
		}
	}
	if len(lookups) == 0 {
		return u, nil // nothing to ask: no word on Prometheus, for the breaker either (no probe)
	}
	if !s.breaker.allow(s.now()) {
		return u, ErrShortCircuited
	}
	qctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	errs := make([]error, len(lookups))
	var wg sync.WaitGroup
	for i, l := range lookups {
		wg.Go(func() {
			*l.into, errs[i] = s.peak(qctx, l.peak, l.series, &q, l.bound)
		})
	}
	wg.Wait()
	down := false
	for i, err := range errs {
		switch {
		case err == nil:
		case unavailable(err):
			down = true
		default:
			s.warn(lookups[i].peak, err)
		}
	}
	if ctx.Err() != nil { // a lookup the caller gave up on says nothing of Prometheus
		s.breaker.release()
	} else {
		switch opened, closed := s.breaker.done(s.now(), !down); {
		case opened:
			s.o.Log.Warn("metrics: Prometheus failed lookups in a row: usage peaks are not looked up until the cooldown is over; events go without them",
				"failures", s.o.FailureThreshold, "cooldown", s.o.Cooldown, "err", errors.Join(errs...))
		case closed:
			s.o.Log.Info("metrics: Prometheus answers again: usage peaks are looked up")
		}
	}
	return u, errors.Join(errs...)
}

// peak looks up one peak of q's run, in bytes.
func (s *Source) peak(ctx context.Context, peak string, series Series, q *Query, bound int64) (int64, error) {
	// The server's own timeout too, in whole seconds: Prometheus parses no fractions.
	v, _, _, err := s.api.Query(ctx, series.Expr(q), q.End, v1.WithTimeout(max(time.Second, s.o.Timeout.Truncate(time.Second))))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", peak, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return 0, fmt.Errorf("%s: a %s answer, want a vector", peak, v.Type())
	}
	switch len(vec) {
	case 0:
		return 0, nil // no series in the run: unknown
	case 1:
		return peakBytes(peak, float64(vec[0].Value), series.UnitBytes, bound)
	}
	return 0, fmt.Errorf("%s: %d samples, want the one of a max()", peak, len(vec))
}

// unavailable reports whether err says Prometheus is down or overloaded (no
// connection, no answer in time, a server error), rather than that it refused the
// query or answered a value that cannot be a peak.
func unavailable(err error) bool {
	var bad *BadValueError
	if errors.As(err, &bad) {
		return false
	}
	var apiErr *v1.Error
	if errors.As(err, &apiErr) {
		switch apiErr.Type {
		case v1.ErrBadData, v1.ErrClient:
			return false
		}
	}
	return true
}

// warn logs a refused query or value, at most once per cooldown for each peak: it
// is the configuration's fault (a metric's unit, a token), and repeats.
func (s *Source) warn(peak string, err error) {
	now := s.now()
	s.mu.Lock()
	last, ok := s.warned[peak]
	if ok && now.Sub(last) < s.o.Cooldown {
		s.mu.Unlock()
		return
	}
	s.warned[peak] = now
	s.mu.Unlock()
	s.o.Log.Warn("metrics: a usage peak is left out (check metrics.* in the configuration)", "peak", peak, "err", err)
}

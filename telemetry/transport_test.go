package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/autofix/autofix/internal/testwait"
)

// vector is a query answer of one sample.
const vector = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1709294700,"1073741824"]}]}}`

// fakePrometheus answers every query with its handler's answer, and keeps the
// requests' Authorization headers.
type fakePrometheus struct {
	*httptest.Server
	mu     sync.Mutex
	auth   []string
	answer func(w http.ResponseWriter, r *http.Request)
}

func newFake(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *fakePrometheus {
	t.Helper()
	f := &fakePrometheus{answer: answer}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		f.answer(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakePrometheus) headers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auth...)
}

func answer(status int, body string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func memoryOnly(t *testing.T, url string, o Options) *Source {
	t.Helper()
	o.URL, o.Memory = url, DefaultMemory()
	if o.Timeout == 0 {
		o.Timeout = testwait.Timeout(t)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBearerTokenIsReadForEveryRequest: a rotated token is sent from the next
// request on.
func TestBearerTokenIsReadForEveryRequest(t *testing.T) {
	f := newFake(t, answer(200, vector))
	token := writeFile(t, "first-token\n")
	src := memoryOnly(t, f.URL, Options{BearerTokenFile: token})
	if _, err := src.Usage(testwait.Context(t), run("p")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("second-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Usage(testwait.Context(t), run("p")); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(f.headers(), ", "), "Bearer first-token, Bearer second-token"; got != want {
		t.Errorf("Authorization headers = %q, want %q", got, want)
	}
}

func TestBasicAuth(t *testing.T) {
	f := newFake(t, answer(200, vector))
	src := memoryOnly(t, f.URL, Options{BasicAuthUsername: "autofix", BasicAuthPasswordFile: writeFile(t, "s3cret\n")})
	if _, err := src.Usage(testwait.Context(t), run("p")); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth("autofix", "s3cret")
	if got, want := f.headers(), r.Header.Get("Authorization"); len(got) != 1 || got[0] != want {
		t.Errorf("Authorization headers = %q, want [%q]", got, want)
	}
}

// TestCredentialsStayWithTheirHost: a redirect to another host gets no token.
func TestCredentialsStayWithTheirHost(t *testing.T) {
	other := newFake(t, answer(200, vector))
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path+"?"+r.URL.RawQuery, http.StatusFound)
	})
	src := memoryOnly(t, f.URL, Options{BearerTokenFile: writeFile(t, "the-token")})
	_, _ = src.Usage(testwait.Context(t), run("p"))
	if got := f.headers(); len(got) == 0 || got[0] != "Bearer the-token" {
		t.Errorf("Prometheus's Authorization headers = %q, want the token", got)
	}
	for _, h := range other.headers() {
		if h != "" {
			t.Errorf("the redirect's host got Authorization %q, want none", h)
		}
	}
}

// TestCredentialErrorsDoNotShowTheSecret: an unreadable or malformed secret file is
// an error that names the file, not its content.
func TestCredentialErrorsDoNotShowTheSecret(t *testing.T) {
	f := newFake(t, answer(200, vector))
	for _, tt := range []struct{ name, content string }{{"empty", "\n"}, {"two lines", "hunter2\nhunter3\n"}} {
		t.Run(tt.name, func(t *testing.T) {
			src := memoryOnly(t, f.URL, Options{BearerTokenFile: writeFile(t, tt.content)})
			_, err := src.Usage(testwait.Context(t), run("p"))
			if err == nil || strings.Contains(err.Error(), "hunter") || !strings.Contains(err.Error(), "bearer token file") {
				t.Errorf("Usage = %v, want an error naming the token file and not its content", err)
			}
		})
	}
	src := memoryOnly(t, f.URL, Options{BearerTokenFile: filepath.Join(t.TempDir(), "missing")})
	if _, err := src.Usage(testwait.Context(t), run("p")); err == nil || !strings.Contains(err.Error(), "bearer token file") {
		t.Errorf("Usage with a missing token file = %v, want an error naming it", err)
	}
}

func TestAnswersAreBounded(t *testing.T) {
	big := `{"status":"success","data":{"resultType":"vector","result":[]},"padding":"` + strings.Repeat("x", maxResponse) + `"}`
	f := newFake(t, answer(200, big))
	src := memoryOnly(t, f.URL, Options{})
	if _, err := src.Usage(testwait.Context(t), run("p")); !errors.Is(err, errTooLarge) {
		t.Errorf("Usage of an answer over 1 MiB = %v, want errTooLarge", err)
	}
}

// TestAnswers: what each kind of answer gives, and whether it counts as
// Prometheus failing (three in a row open the breaker).
func TestAnswers(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		want     int64
		wantErr  string
		failures bool // counts toward short-circuiting
	}{
		{"a sample", 200, vector, 1 << 30, "", false},
		{"no series", 200, `{"status":"success","data":{"resultType":"vector","result":[]}}`, 0, "", false},
		{"a scalar", 200, `{"status":"success","data":{"resultType":"scalar","result":[1709294700,"1"]}}`, 0, "want a vector", true},
		{"two samples", 200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}`,
			0, "2 samples", true},
		{"a query refused", 400, `{"status":"error","errorType":"bad_data","error":"parse error"}`, 0, "parse error", false},
		{"unauthorized", 401, `Unauthorized`, 0, "client error: 401", false},
		{"a server error", 503, `Service Unavailable`, 0, "server error: 503", true},
		{"a query that timed out", 503, `{"status":"error","errorType":"timeout","error":"query timed out"}`, 0, "server error: 503", true},
		{"an overloaded server", 422, `{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}`,
			0, "too many samples", true},
		{"not JSON", 200, `<html>`, 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, answer(tt.status, tt.body))
			src := memoryOnly(t, f.URL, Options{FailureThreshold: 3})
			for range 3 {
				got, err := src.Usage(testwait.Context(t), run("p"))
				if got.PeakMemoryBytes != tt.want || (err != nil) != (tt.wantErr != "" || tt.failures) ||
					err != nil && !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Usage = %+v, %v; want memory %d and an error containing %q", got, err, tt.want, tt.wantErr)
				}
			}
			_, err := src.Usage(testwait.Context(t), run("p"))
			if got := errors.Is(err, ErrShortCircuited); got != tt.failures {
				t.Errorf("after three such answers, short-circuited = %v, want %v", got, tt.failures)
			}
		})
	}
}

// TestCallerCancellationIsNotAFailure: lookups the caller gave up on (a shutdown)
// do not short-circuit later ones.
func TestCallerCancellationIsNotAFailure(t *testing.T) {
	src := memoryOnly(t, blackHole(t), Options{FailureThreshold: 1, Timeout: time.Hour})
	ctx, cancel := context.WithCancel(testwait.Context(t))
	cancel()
	if _, err := src.Usage(ctx, run("p")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Usage with a cancelled context = %v, want context.Canceled", err)
	}
	if !src.breaker.allow(t0) {
		t.Error("after a cancelled lookup the breaker is open, want it closed")
	}
	src.breaker.done(t0, true)
	// A probe the caller gives up on leaves the next one free to go.
	now := t0
	src.now = func() time.Time { return now }
	src.breaker.done(now, false) // open, threshold 1
	now = now.Add(src.o.Cooldown)
	if _, err := src.Usage(ctx, run("p")); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled probe = %v, want context.Canceled", err)
	}
	if !src.breaker.allow(now) {
		t.Error("after a cancelled probe no probe may go, want one")
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no URL", Options{}, "Options.URL: not a URL"},
		{"a scheme", Options{URL: "ftp://prometheus"}, `scheme "ftp"`},
		{"no host", Options{URL: "http:///api"}, "no host"},
		{"credentials in the URL", Options{URL: "http://admin:hunter2@prometheus"}, "holds credentials"},
		{"a query", Options{URL: "http://prometheus/?x=1"}, "a query or fragment"},
		{"both kinds of auth", Options{URL: "http://p", BearerTokenFile: "t", BasicAuthUsername: "u", BasicAuthPasswordFile: "p"}, "one or the other"},
		{"a user without a password", Options{URL: "http://p", BasicAuthUsername: "u"}, "both or neither"},
		{"a bad series", Options{URL: "http://p", GPUMemory: Series{Metric: "a b"}}, "Options.GPUMemory.metric:"},
		{"negative", Options{URL: "http://p", Timeout: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("New() = %v, want an error containing %q (and no password)", err, tt.want)
			}
		})
	}
	if _, err := New(Options{URL: "https://prometheus.monitoring.svc:9090/prefix", Memory: DefaultMemory()}); err != nil {
		t.Errorf("New(a valid URL) = %v", err)
	}
}

// TestSecretFilesThatCannotBeRead: a token file that is not a regular file of one
// short line is refused before it is read, so that no lookup waits past Timeout
// on it: a FIFO no one writes to would hold every lookup, and the watcher behind
// it, for good.
func TestSecretFilesThatCannotBeRead(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	huge := writeFile(t, strings.Repeat("x", 1<<20)+"\n")
	f := newFake(t, answer(200, vector))
	for _, tt := range []struct{ name, path, want string }{
		{"a FIFO", fifo, "not a regular file"},
		{"a device", os.DevNull, "not a regular file"},
		{"over 64 KiB", huge, "over the 65536-byte limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := memoryOnly(t, f.URL, Options{BearerTokenFile: tt.path, Timeout: 100 * time.Millisecond})
			done := make(chan error, 1)
			go func() {
				_, err := src.Usage(context.Background(), run("p"))
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "bearer token file") || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Usage = %v, want an error naming the token file and saying %q", err, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Usage still waiting 5s on the token file, with a Timeout of 100ms")
			}
		})
	}
	if got := f.headers(); len(got) != 0 {
		t.Errorf("Prometheus got %d requests, want none without a token", len(got))
	}
}

// TestALookupOfNothingIsNoProbe: with only the GPU peak configured, a run without
// GPUs queries nothing, so it says nothing of Prometheus: while lookups are
// short-circuited it must not close the breaker (and log that Prometheus answers
// again), which would send the next GPU lookups to a Prometheus still down.
func TestALookupOfNothingIsNoProbe(t *testing.T) {
	f := newFake(t, answer(503, "down"))
	src, err := New(Options{URL: f.URL, GPUMemory: DefaultGPUMemory(), Timeout: testwait.Timeout(t), FailureThreshold: 2, Cooldown: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	src.now = func() time.Time { return now }
	gpu := run("p")
	gpu.GPUs = 1
	for range 2 {
		if _, err := src.Usage(testwait.Context(t), gpu); err == nil || errors.Is(err, ErrShortCircuited) {
			t.Fatalf("a GPU lookup, Prometheus down = %v, want its error", err)
		}
	}
	now = now.Add(time.Minute)
	if _, err := src.Usage(testwait.Context(t), run("p")); err != nil {
		t.Fatalf("a lookup without GPUs = %v, want nil (nothing to look up)", err)
	}
	if _, err := src.Usage(testwait.Context(t), gpu); err == nil || errors.Is(err, ErrShortCircuited) {
		t.Fatalf("the probe after the cooldown = %v, want it tried (and failed)", err)
	}
	if _, err := src.Usage(testwait.Context(t), gpu); !errors.Is(err, ErrShortCircuited) {
		t.Errorf("after a failed probe = %v, want ErrShortCircuited", err)
	}
	if got := len(f.headers()); got != 3 {
		t.Errorf("Prometheus got %d queries, want 3 (two failures and one probe)", got)
	}
}

// TestADeadConnectionIsNotUsedAgain: over https, when the connection to Prometheus
// goes dead without being closed (its node died; no FIN, no RST), the lookup
// waiting on it times out, and the next one dials again and is answered by the
// Prometheus that is back behind the same address, rather than waiting on the dead
// connection (HTTP/2 keeps it, and sends every lookup down it, until TCP gives up
// on it about 15 minutes later).
func TestADeadConnectionIsNotUsedAgain(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(answer(200, vector)))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	proxy := newFreezer(t, srv.Listener.Addr().String())
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	src := memoryOnly(t, "https://"+proxy.addr, Options{TLS: &tls.Config{RootCAs: roots, ServerName: "example.com", MinVersion: tls.VersionTLS12},
		Timeout: 500 * time.Millisecond, FailureThreshold: 100})
	if _, err := src.Usage(testwait.Context(t), run("p")); err != nil {
		t.Fatalf("Usage = %v", err)
	}
	proxy.freeze()
	if _, err := src.Usage(testwait.Context(t), run("p")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Usage on a dead connection = %v, want the timeout's error", err)
	}
	for i := range 3 {
		if got, err := src.Usage(testwait.Context(t), run("p")); err != nil || got.PeakMemoryBytes != 1<<30 {
			t.Fatalf("lookup %d after the dead connection = %+v, %v; want 1 GiB from a new connection", i+1, got, err)
		}
	}
}

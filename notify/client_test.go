package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func alertsOf(n int) []Alert {
	out := make([]Alert, n)
	for i := range out {
		out[i] = Alert{Labels: map[string]string{"alertname": AlertName, "remediation": fmt.Sprint(i)}, StartsAt: t0, EndsAt: t0.Add(time.Hour)}
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCredentialsReadForEveryPost: the token (or password) file is read for each
// post, so a rotated secret is used at once; an unreadable one sends nothing.
func TestCredentialsReadForEveryPost(t *testing.T) {
	dir := t.TempDir()
	token, password := filepath.Join(dir, "token"), filepath.Join(dir, "password")
	writeFile(t, token, "first\n")
	writeFile(t, password, "hunter2\n")
	am := newFakeAlertmanager(t)
	bearer := newClient(&Options{URLs: []string{am.URL}, BearerTokenFile: token, Timeout: time.Minute})
	basic := newClient(&Options{URLs: []string{am.URL}, BasicAuthUsername: "autofix", BasicAuthPasswordFile: password, Timeout: time.Minute})
	ctx := context.Background()
	if err := bearer.post(ctx, bearer.endpoints[0], alertsOf(1)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, token, "second\n")
	if err := bearer.post(ctx, bearer.endpoints[0], alertsOf(1)); err != nil {
		t.Fatal(err)
	}
	if err := basic.post(ctx, basic.endpoints[0], alertsOf(1)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range am.take() {
		got = append(got, p.header.Get("Authorization"))
	}
	want := []string{"Bearer first", "Bearer second", "Basic YXV0b2ZpeDpodW50ZXIy"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Authorization headers = %q, want %q", got, want)
	}
	if err := os.Remove(token); err != nil {
		t.Fatal(err)
	}
	err := bearer.post(ctx, bearer.endpoints[0], alertsOf(1))
	if resultOf(err) != ResultCredentials || !strings.Contains(err.Error(), "bearer token file") {
		t.Errorf("post with the token file gone = %v, want a credentials error naming the token file", err)
	}
	if p := am.take(); len(p) != 0 {
		t.Errorf("%d posts without credentials, want none", len(p))
	}
}

// TestPostResults: each answer maps to its result, and Alertmanager's message is
// in the error, cleaned and clipped.
func TestPostResults(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bad" + alertsPath:
			http.Error(w, "\"start time must be before end time\x1b[2J\"\n"+strings.Repeat("x", 10000), http.StatusBadRequest)
		case "/down" + alertsPath:
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved" + alertsPath:
			http.Redirect(w, r, "http://elsewhere.example/api/v2/alerts", http.StatusTemporaryRedirect)
		case "/hang" + alertsPath:
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		default:
			t.Errorf("a post to %s", r.URL.Path)
		}
	}))
	defer srv.Close()
	defer close(hang)
	tests := []struct {
		url, want string
		status    int
		message   string
	}{
		{srv.URL + "/bad", ResultRefused, 400, `"start time must be before end time [2J" xxx`},
		{srv.URL + "/down", ResultFailed, 503, "no message"},
		{srv.URL + "/moved", ResultFailed, 307, ""},
		{srv.URL + "/hang", ResultUnreachable, 0, "deadline exceeded"},
		{closed, ResultUnreachable, 0, "connection refused"},
	}
	for _, tt := range tests {
		// A long timeout, except for the server that never answers: the others must not
		// time out on a loaded machine.
		timeout := time.Minute
		if tt.want == ResultUnreachable && tt.url != closed {
			timeout = 100 * time.Millisecond
		}
		c := newClient(&Options{URLs: []string{tt.url}, Timeout: timeout})
		err := c.post(context.Background(), c.endpoints[0], alertsOf(1))
		var pe *PostError
		if !errors.As(err, &pe) || pe.Result != tt.want || pe.Status != tt.status || !strings.Contains(err.Error(), tt.message) ||
			len(err.Error()) > 600 || strings.Contains(err.Error(), "\x1b") {
			t.Errorf("post to %s = %v, want %s, status %d, with %q, clean and short", tt.url, err, tt.want, tt.status, tt.message)
		}
	}
}

// TestEveryAlertmanagerInBatches: each Alertmanager gets every alert, at most
// maxBatch to a post, under its route prefix.
func TestEveryAlertmanagerInBatches(t *testing.T) {
	a, b := newFakeAlertmanager(t), newFakeAlertmanager(t)
	c := newClient(&Options{URLs: []string{a.URL + "/alertmanager/", b.URL}, Timeout: time.Minute})
	for _, err := range c.postAll(context.Background(), alertsOf(2*maxBatch+1)) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		am   *fakeAlertmanager
		path string
	}{{a, "/alertmanager" + alertsPath}, {b, alertsPath}} {
		var sizes []int
		seen := map[string]bool{}
		for _, p := range tc.am.take() {
			sizes = append(sizes, len(p.alerts))
			if p.path != tc.path {
				t.Errorf("a post to %s, want %s", p.path, tc.path)
			}
			for _, al := range p.alerts {
				seen[al.Labels["remediation"]] = true
			}
		}
		if fmt.Sprint(sizes) != "[100 100 1]" || len(seen) != 2*maxBatch+1 {
			t.Errorf("posts of %v alerts (%d distinct), want [100 100 1], all %d", sizes, len(seen), 2*maxBatch+1)
		}
	}
}

// TestUnreachableAlertmanagerOnePost: an Alertmanager that cannot be reached is
// sent no more batches in that round, each of which would wait out the timeout.
func TestUnreachableAlertmanagerOnePost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	c := newClient(&Options{URLs: []string{closed}, Timeout: time.Minute})
	errs := c.postAll(context.Background(), alertsOf(2*maxBatch+1))
	if len(errs) != 1 || resultOf(errs[0]) != ResultUnreachable {
		t.Errorf("posts of 3 batches to an Alertmanager that is not there = %v, want one, unreachable", errs)
	}
}

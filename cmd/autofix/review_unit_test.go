package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestSanitizeLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"resnet50-train-7", "resnet50-train-7"},
		{"café 日本 ✓", "café 日本 ✓"},
		{"a\x1b[2Jb", `a\x1b[2Jb`},
		{"title\x1b]0;owned\x07", `title\x1b]0;owned\x07`},
		{"over\rwrite", `over\rwrite`},
		{"two\nlines\tand a tab", `two\nlines\tand a tab`},
		{"c1 \u009b31m csi", `c1 \u009b31m csi`},
		{"del \x7f", `del \x7f`},
		{"rtl \u202eevil", `rtl \u202eevil`},
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"line\u2028sep", `line\u2028sep`},
		{"tag \U000E0041", `tag \U000e0041`},
		{"bad \xff utf-8", `bad \xff utf-8`},
	}
	for _, tt := range tests {
		if got := sanitizeLine(tt.in); got != tt.want {
			t.Errorf("sanitizeLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got, want := sanitizeText("one\n\ttwo\r\x1b[0m"), "one\n\ttwo\\r\\x1b[0m"; got != want {
		t.Errorf("sanitizeText = %q, want %q: line breaks and tabs kept, the rest escaped", got, want)
	}
}

func TestWriteJSONEscapesWhatATerminalWouldRun(t *testing.T) {
	// Raw in a JSON string, valid JSON: DEL, a C1 CSI, an override, a tag character,
	// a line separator; and an ESC the server escaped itself.
	raw := []byte("{\"job\":\"a\x7fb\u009b31m\u202ec\U000E0041d\u2028e\\u001b[2J\",\"n\":1}")
	var out bytes.Buffer
	if err := writeJSON(&out, raw); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"\x7f", "\u009b", "\u202e", "\U000E0041", "\u2028", "\x1b"} {
		if strings.Contains(out.String(), d) {
			t.Errorf("writeJSON leaves %q raw: %q", d, out.String())
		}
	}
	var got, want map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("writeJSON wrote invalid JSON %q: %v", out.String(), err)
	}
	_ = json.Unmarshal(raw, &want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("writeJSON changed the value: got %q, want %q", got, want)
	}
	if err := writeJSON(&out, []byte(`{"a":`)); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("writeJSON of a cut body: %v, want an error saying it is not valid JSON", err)
	}
}

// serverCmd is a cobra command with the connection flags, parsed from args.
func serverCmd(t *testing.T, args ...string) (*cobra.Command, *connFlags) {
	t.Helper()
	var cf connFlags
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	cf.register(cmd)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return cmd, &cf
}

func TestResolveServer(t *testing.T) {
	tests := []struct {
		env     string
		args    []string
		want    string
		wantErr string
	}{
		{"", nil, "http://127.0.0.1:8080", ""},
		{"https://autofix.example:8443", nil, "https://autofix.example:8443", ""},
		{"https://autofix.example:8443", []string{"--server", "https://other.example/autofix"}, "https://other.example/autofix", ""},
		{"", []string{"--server", "autofix.example:8080"}, "", `--server "autofix.example:8080": want an http:// or https:// URL`},
		{"ftp://x", nil, "", `AUTOFIX_SERVER "ftp://x": want an http:// or https:// URL`},
		{"", []string{"--server", "https://"}, "", "no host"},
		{"", []string{"--server", "https://alice:hunter2@autofix.example"}, "", "credentials in the URL are not used"},
		{"", []string{"--server", "https://autofix.example/?state=x"}, "", "without a query"},
	}
	for _, tt := range tests {
		t.Setenv("AUTOFIX_SERVER", tt.env)
		cmd, cf := serverCmd(t, tt.args...)
		u, err := cf.resolveServer(cmd)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("env %q, %q: %v; want an error with %q (and no password)", tt.env, tt.args, err, tt.wantErr)
			}
		case err != nil || u.String() != tt.want:
			t.Errorf("env %q, %q: %v, %v; want %s", tt.env, tt.args, u, err, tt.want)
		}
	}
}

// TestReviewTimeout: a server that accepts the connection and never answers is
// given up on at --timeout, with a message that says so.
func TestReviewTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer func() { _ = c.Close() }() // held open, never answered, until the test ends
		}
	}()
	code, _, stderr := runCmd(t, "", "review", "list", "--server", "http://"+ln.Addr().String(), "--token", "afx_x", "--timeout", "100ms")
	if code != 1 || !strings.Contains(stderr, "no answer from http://"+ln.Addr().String()+" in time (--timeout)") {
		t.Errorf("a server that never answers: exit %d, stderr %q; want exit 1, no answer in time", code, stderr)
	}
}

// TestReviewDistrustsTheServer: what a server answers is bounded and checked — a
// redirect is not followed (the token goes nowhere else), a body that is not the
// API's JSON, one too large, and a page cursor that does not advance are errors,
// not hangs or garbage.
func TestReviewDistrustsTheServer(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		args    []string
		want    string
	}{
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/v1/remediations", http.StatusFound)
		}, []string{"list"}, `answered 302, a redirect to "` + other.URL + `/v1/remediations" (not followed)`},
		{"HTML", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>login</html>"))
		}, []string{"list"}, "answered 200 with text/html, not the API's JSON"},
		{"an error that is not the API's", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
		}, []string{"show", "x"}, "answered 502: 502 Bad Gateway with text/html, not the API's error JSON"},
		{"too large", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			chunk := bytes.Repeat([]byte(" "), 1<<20)
			for range maxAnswer>>20 + 1 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, []string{"show", "x"}, "is over 32 MiB: not read"},
		{"a cursor that stays", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"items":[{"id":"a","state":"pending_review","confidence":1,"attempt":1,` +
				`"receivedAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}],"next":"a"}`))
		}, []string{"list", "--limit", "0"}, "the page cursor of"},
		{"a hostile error message", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"error":{"code":"conflict","message":"\u001b]0;owned\u0007 no"}}`))
		}, []string{"approve", "x"}, `approve x: \x1b]0;owned\x07 no`},
	}
	for _, tt := range tests {
		srv := httptest.NewServer(tt.handler)
		code, stdout, stderr := runCmd(t, "", append([]string{"review", "--server", srv.URL, "--token", "afx_x", "--timeout", "1m"}, tt.args...)...)
		srv.Close()
		if code == 0 || stdout != "" || !strings.Contains(stderr, tt.want) || strings.Contains(stderr, "\x1b") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want a failure saying %q", tt.name, code, stdout, stderr, tt.want)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect's target got %d requests, want none", n)
	}
}

func TestReviewOutputFlags(t *testing.T) {
	tests := []struct {
		format  string
		json    bool
		want    string
		wantErr string
	}{
		{"table", false, "table", ""},
		{"wide", false, "wide", ""},
		{"json", false, "json", ""},
		{"table", true, "json", ""},
		{"wide", true, "", "--json and -o wide"},
		{"yaml", false, "", `-o "yaml"`},
	}
	for _, tt := range tests {
		o := outputFlags{format: tt.format, json: tt.json}
		got, err := o.mode()
		if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("-o %s --json=%v: %q, %v; want %q, error with %q", tt.format, tt.json, got, err, tt.want, tt.wantErr)
		}
	}
	if got := age(time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 56, 40, 0, time.UTC)); got != "3m20s" {
		t.Errorf("age of 200 s = %q, want 3m20s", got)
	}
}

func TestCheckToken(t *testing.T) {
	tests := []struct {
		token   string
		wantErr string
	}{
		{"afx_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", ""},
		{"a pass phrase from a Secret, typed by people", ""}, // a Secret's token may hold spaces
		{"", "is empty"},
		{"afx_one\nafx_two", "control character (a line break?) at byte 7"},
		{"afx_\x1b[2J", "control character"},
		{"afx_\x7f", "control character"},
	}
	for _, tt := range tests {
		err := checkToken(tt.token)
		if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("checkToken(%q) = %v, want an error with %q", tt.token, err, tt.wantErr)
		}
		if err != nil && tt.token != "" && strings.Contains(err.Error(), tt.token) {
			t.Errorf("checkToken(%q) shows the token: %v", tt.token, err)
		}
	}
}

// TestReviewErrorLinesAreSanitized: an error that quotes text from elsewhere (here a
// file name, in the operating system's error) reaches the terminal escaped too.
func TestReviewErrorLinesAreSanitized(t *testing.T) {
	code, _, stderr := runCmd(t, "", "review", "list", "--token", "afx_x", "--ca-file", "/nonexistent/\x1b]0;owned\x07")
	if code != 1 || strings.ContainsAny(stderr, "\x1b\x07") || !strings.Contains(stderr, `--ca-file: open /nonexistent/\x1b]0;owned\x07`) {
		t.Errorf("exit %d, stderr %q; want exit 1, the file name escaped", code, stderr)
	}
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/api/client"
)

// The review commands' connection to a running service: where it is, the token, TLS,
// and the HTTP client the generated API client sends through.

// defaultServer is serve's default http.addr, as a URL.
const defaultServer = "http://127.0.0.1:8080"

// Limits on what the review commands read; a server is not trusted to be sane.
const (
	// maxTokenFile is the largest token file read, in bytes: a token is 47 bytes.
	maxTokenFile = 4 << 10
	// maxAnswer is the largest response body read, in bytes: a remediation with its
	// event is under 2 MiB, a page of 1,000 summaries a few.
	maxAnswer = 32 << 20
)

// connFlags are the flags every review command shares.
type connFlags struct {
	server, token, tokenFile, caFile string
	insecure                         bool
	timeout                          time.Duration
	verbose                          bool
}

func (f *connFlags) register(cmd *cobra.Command) {
	p := cmd.PersistentFlags()
	p.StringVar(&f.server, "server", "", "URL of the service's API (default $AUTOFIX_SERVER, else "+defaultServer+", serve's default address)")
	p.StringVar(&f.token, "token", "", "the bearer token (visible to other users in the process list: prefer --token-file or AUTOFIX_TOKEN)")
	p.StringVar(&f.tokenFile, "token-file", "", "a file holding the bearer token (used when --token is not given)")
	p.StringVar(&f.caFile, "ca-file", "", "PEM file of the certificate authorities to trust for an https:// server, in place of the system's")
	p.BoolVar(&f.insecure, "insecure-skip-tls-verify", false, "do not verify the server's certificate (anyone on the path can read the token); for tests only")
	p.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for each answer of the server")
	p.BoolVarP(&f.verbose, "verbose", "v", false, "print each request and the status of its answer on stderr (never the token)")
}

// tokenSource is a token and where it came from, for messages: "--token",
// "--token-file PATH" or "AUTOFIX_TOKEN". The secret is never printed.
type tokenSource struct {
	secret string
	from   string
}

// resolveToken finds the token: --token, else --token-file, else AUTOFIX_TOKEN.
func (f *connFlags) resolveToken(cmd *cobra.Command) (tokenSource, error) {
	var ts tokenSource
	switch {
	case cmd.Flags().Changed("token"):
		ts = tokenSource{secret: strings.TrimSpace(f.token), from: "--token"}
	case f.tokenFile != "":
		ts.from = "--token-file " + f.tokenFile
		secret, err := readTokenFile(f.tokenFile)
		if err != nil {
			return ts, fmt.Errorf("--token-file: %w", err)
		}
		ts.secret = secret
	case os.Getenv("AUTOFIX_TOKEN") != "":
		ts = tokenSource{secret: strings.TrimSpace(os.Getenv("AUTOFIX_TOKEN")), from: "AUTOFIX_TOKEN"}
	default:
		return ts, errors.New("no token: pass --token-file FILE (or --token, or set AUTOFIX_TOKEN); " +
			"`autofix token create --role approver --name NAME` makes one")
	}
	if err := checkToken(ts.secret); err != nil {
		return ts, fmt.Errorf("the token from %s %w", ts.from, err)
	}
	return ts, nil
}

// readTokenFile reads a token file: the token, with surrounding white space
// (a trailing newline) dropped.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path) // #nosec G304 -- the user names the file to read
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("%s: over %d bytes, not a token file", path, maxTokenFile)
	}
	return strings.TrimSpace(string(b)), nil
}

// checkToken refuses a token that cannot be one — and says so without showing it,
// as the mistake may be a file holding something else. A Secret's token may hold
// spaces (docs/api.md); a control character, a line break included, it may not.
func checkToken(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return fmt.Errorf("holds a control character (a line break?) at byte %d: a token is one line", i)
		}
	}
	return nil
}

// resolveServer finds the server's URL: --server, else AUTOFIX_SERVER, else the
// default, checked.
func (f *connFlags) resolveServer(cmd *cobra.Command) (*url.URL, error) {
	raw, from := defaultServer, "the default server"
	if cmd.Flags().Changed("server") {
		raw, from = f.server, "--server"
	} else if v := os.Getenv("AUTOFIX_SERVER"); v != "" {
		raw, from = v, "AUTOFIX_SERVER"
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: %w", from, errors.Unwrap(err))
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%s %q: want an http:// or https:// URL", from, sanitizeLine(raw))
	case u.Host == "":
		return nil, fmt.Errorf("%s %q: no host", from, sanitizeLine(raw))
	case u.User != nil:
		return nil, fmt.Errorf("%s %q: credentials in the URL are not used; pass a token", from, u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%s %q: want the API's base URL, without a query or fragment", from, sanitizeLine(raw))
	}
	return u, nil
}

// reviewClient calls the API of one service with one token.
type reviewClient struct {
	api    *client.Client
	server string
	token  tokenSource
}

// dial resolves the flags and makes the client; warnings go to errOut.
func (f *connFlags) dial(cmd *cobra.Command) (*reviewClient, error) {
	u, err := f.resolveServer(cmd)
	if err != nil {
		return nil, err
	}
	token, err := f.resolveToken(cmd)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case f.caFile != "" && f.insecure:
		return nil, errors.New("--ca-file and --insecure-skip-tls-verify: give one or the other")
	case f.caFile != "":
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		tlsConf.RootCAs = x509.NewCertPool()
		if !tlsConf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file: %s holds no PEM certificate", f.caFile)
		}
	case f.insecure:
		tlsConf.InsecureSkipVerify = true // #nosec G402 -- asked for by name, and warned about below
		if u.Scheme == "https" {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: --insecure-skip-tls-verify: the certificate of %s is not checked; "+
				"anyone on the path can impersonate it and read the token\n", u.Host)
		}
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: the token goes to %s over plain HTTP, readable on the network: use https://\n", u.Host)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	hc := &http.Client{Transport: tr, Timeout: f.timeout,
		// A redirect is refused, not followed: the answer names where it points, and
		// the token goes nowhere the user did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var doer client.HttpRequestDoer = hc
	if f.verbose {
		doer = verboseDoer{c: hc, w: cmd.ErrOrStderr()}
	}
	secret := token.secret
	api, err := client.NewClient(u.String(), client.WithHTTPClient(doer),
		client.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+secret)
			r.Header.Set("User-Agent", "autofix-review")
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	return &reviewClient{api: api, server: u.Redacted(), token: token}, nil
}

// loopback reports whether host is this machine: plain HTTP to it stays on it.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// verboseDoer prints each request's method and URL and its answer's status on w.
// It prints no header: the Authorization header is the token.
type verboseDoer struct {
	c *http.Client
	w io.Writer
}

func (d verboseDoer) Do(req *http.Request) (*http.Response, error) {
	fmt.Fprintf(d.w, "> %s %s (Authorization: Bearer <hidden>)\n", req.Method, sanitizeLine(req.URL.Redacted()))
	start := time.Now()
	resp, err := d.c.Do(req) // #nosec G704 -- the URL is the user's --server
	if err != nil {
		fmt.Fprintf(d.w, "< no answer after %s\n", time.Since(start).Round(time.Millisecond))
		return nil, err
	}
	fmt.Fprintf(d.w, "< %s in %s, %s, request id %s\n", sanitizeLine(resp.Status), time.Since(start).Round(time.Millisecond),
		orDash(sanitizeLine(resp.Header.Get("Content-Type"))), orDash(sanitizeLine(resp.Header.Get("X-Request-Id"))))
	return resp, nil
}

// answer is one response of the API, read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// call sends one request made by send and returns its answer if it is a 200 with
// a JSON body; otherwise the error naming what went wrong (a *reviewError). op
// says what was being done, for the message: "list remediations", "approve ev-1".
func (c *reviewClient) call(ctx context.Context, op string, send func(context.Context) (*http.Response, error)) (answer, error) {
	resp, err := send(ctx)
	if err != nil {
		return answer{}, c.transportError(op, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return answer{}, c.transportError(op, err)
	}
	if len(body) > maxAnswer {
		return answer{}, &reviewError{exitFailure, fmt.Sprintf("%s: the answer of %s is over %d MiB: not read", op, c.server, maxAnswer>>20)}
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: body}
	if a.status != http.StatusOK {
		return a, c.statusError(op, a)
	}
	if !isJSON(a.header) {
		return a, &reviewError{exitFailure, fmt.Sprintf("%s: %s answered %d with %s, not the API's JSON: is --server the autofix API?",
			op, c.server, a.status, orDash(sanitizeLine(a.header.Get("Content-Type"))))}
	}
	return a, nil
}

func isJSON(h http.Header) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(h.Get("Content-Type"))), "application/json")
}

// transportError says why no answer came: the server cannot be reached, its
// certificate is not trusted, or it did not answer in time.
func (c *reviewClient) transportError(op string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var netErr net.Error
	msg := fmt.Sprintf("%s: cannot reach %s: %s", op, c.server, sanitizeLine(err.Error()))
	switch {
	case errors.As(err, &unknownCA):
		msg += " (pass the certificate of the authority that signed the server's with --ca-file)"
	case errors.As(err, &hostname):
		msg += " (the certificate is not for the host of --server)"
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		msg = fmt.Sprintf("%s: no answer from %s in time (--timeout)", op, c.server)
	case errors.Is(err, context.Canceled):
		msg = op + ": interrupted"
	}
	return &reviewError{exitFailure, msg}
}

package telemetry

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/autofix/autofix/internal/boundedfile"
)

// maxResponse bounds the body of one answer: a query of a maximum returns one
// sample, and an answer past this is not Prometheus's.
const maxResponse = 1 << 20

// transport adds the configured credentials to requests to Prometheus's own
// address (never to a host a redirect names), and bounds the answers' bodies.
type transport struct {
	base   http.RoundTripper
	target *url.URL // scheme and host the credentials are for

	bearerFile           string
	username, passwdFile string
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == t.target.Scheme && req.URL.Host == t.target.Host {
		switch {
		case t.bearerFile != "":
			token, err := readSecret(t.bearerFile, "bearer token file")
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context()) // a RoundTripper must not change the caller's request
			req.Header.Set("Authorization", "Bearer "+token)
		case t.username != "":
			password, err := readSecret(t.passwdFile, "basic auth password file")
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.SetBasicAuth(t.username, password)
		}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponse}
	return resp, nil
}

// readSecret reads a credential from its file, every time (a mounted Secret or a
// projected token is replaced when it rotates), what naming the file in errors.
func readSecret(path, what string) (string, error) {
	s, err := ReadSecretFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return s, nil
}

// maxSecret bounds a secret's file, in bytes: a token or a password is one line (a
// service account's token, a few KiB).
const maxSecret = 64 << 10

// ReadSecretFile reads the credential in the file at path, without its trailing
// newline: one line, in a regular file of at most 64 KiB. Anything else is refused
// before it is read — a FIFO would hold the read (and the lookup, and the watcher
// behind it) until something writes to it, and a device such as /dev/zero never
// ends. Errors name the file, never its content.
func ReadSecretFile(path string) (string, error) {
	b, err := boundedfile.Read(path, maxSecret)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	switch {
	case s == "":
		return "", fmt.Errorf("%s is empty", path)
	case strings.ContainsAny(s, "\r\n"):
		return "", fmt.Errorf("%s holds more than one line", path)
	}
	return s, nil
}

// errTooLarge is the error of an answer longer than maxResponse.
var errTooLarge = errors.New("telemetry: answer over 1 MiB: not a Prometheus query result")

// limitedBody reads at most left bytes of rc, and fails past them.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more says whether the body really is longer.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// HTTP1Transport is the transport of a client of a monitoring service (Prometheus,
// Alertmanager) with tlsConfig and at most maxIdlePerHost idle connections a host.
// HTTP/1.1 only: a request that times out closes its connection, so the next one
// dials again. HTTP/2 keeps a connection that went dead without being closed (the
// server's node died) and sends every later request down it, until TCP gives up on
// it many minutes later; small requests gain nothing from HTTP/2.
func HTTP1Transport(tlsConfig *tls.Config, maxIdlePerHost int) *http.Transport {
	var http1 http.Protocols
	http1.SetHTTP1(true)
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   10 * time.Second,
		Protocols:             &http1,
		MaxIdleConnsPerHost:   maxIdlePerHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

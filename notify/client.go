package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/autofix/autofix/telemetry"
)

// alertsPath is Alertmanager's API v2 endpoint for posting alerts, under its base
// URL (and route prefix).
const alertsPath = "/api/v2/alerts"

// maxBatch is the most alerts in one post: a round with more makes several.
const maxBatch = 100

// Results of a post, the values of the result label of the posts metric.
const (
	ResultOK          = "ok"
	ResultRefused     = "refused"     // a 4xx: the alerts, or the credentials, were refused
	ResultFailed      = "failed"      // a 5xx, or an answer that is not Alertmanager's
	ResultUnreachable = "unreachable" // no connection, or no answer in time
	ResultCredentials = "credentials" // the token or password file could not be read
)

// PostError is the error of a post Alertmanager did not take.
type PostError struct {
	// URL is the endpoint posted to (it holds no credentials: config refuses them).
	URL string
	// Result is one of the Result constants other than ResultOK.
	Result string
	// Status is the HTTP status of the answer, 0 without one.
	Status int
	Err    error
}

func (e *PostError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("post alerts to %s: %d %s: %v", e.URL, e.Status, http.StatusText(e.Status), e.Err)
	}
	return fmt.Sprintf("post alerts to %s: %v", e.URL, e.Err)
}

func (e *PostError) Unwrap() error { return e.Err }

// client posts alerts to every Alertmanager, with the configured credentials.
type client struct {
	hc        *http.Client
	endpoints []string // each Alertmanager's alerts endpoint
	timeout   time.Duration

	bearerFile, username, passwordFile string
}

func newClient(o *Options) *client {
	base := telemetry.HTTP1Transport(o.TLS, 2) // HTTP/1.1: a post that times out closes its connection
	c := &client{
		// A redirect is not followed: the credentials go only where the configuration
		// says, and Alertmanager's API does not redirect.
		hc: &http.Client{Transport: base, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		timeout:    o.Timeout,
		bearerFile: o.BearerTokenFile, username: o.BasicAuthUsername, passwordFile: o.BasicAuthPasswordFile,
	}
	for _, u := range o.URLs {
		c.endpoints = append(c.endpoints, strings.TrimRight(u, "/")+alertsPath)
	}
	return c
}

// postAll posts alerts to every Alertmanager, at once, maxBatch to a post, and
// returns the result of each post (and its error, nil for ResultOK). An
// Alertmanager that could not be reached is sent no more batches this round: each
// would wait out the same timeout.
func (c *client) postAll(ctx context.Context, alerts []Alert) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, ep := range c.endpoints {
		wg.Go(func() {
			for start := 0; start < len(alerts); start += maxBatch {
				err := c.post(ctx, ep, alerts[start:min(start+maxBatch, len(alerts))])
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				if resultOf(err) == ResultUnreachable {
					break
				}
			}
		})
	}
	wg.Wait()
	return errs
}

// maxErrorBody bounds what is read of an error's answer.
const maxErrorBody = 4 << 10

// post posts alerts to one endpoint. Its error is a *PostError.
func (c *client) post(ctx context.Context, endpoint string, alerts []Alert) error {
	body, err := json.Marshal(alerts)
	if err != nil { // maps of strings and times: cannot happen
		return &PostError{URL: endpoint, Result: ResultFailed, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return &PostError{URL: endpoint, Result: ResultFailed, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "autofix")
	switch {
	case c.bearerFile != "":
		token, err := telemetry.ReadSecretFile(c.bearerFile)
		if err != nil {
			return &PostError{URL: endpoint, Result: ResultCredentials, Err: fmt.Errorf("bearer token file: %w", err)}
		}
		req.Header.Set("Authorization", "Bearer "+token)
	case c.username != "":
		password, err := telemetry.ReadSecretFile(c.passwordFile)
		if err != nil {
			return &PostError{URL: endpoint, Result: ResultCredentials, Err: fmt.Errorf("basic auth password file: %w", err)}
		}
		req.SetBasicAuth(c.username, password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return &PostError{URL: endpoint, Result: ResultUnreachable, Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	result := ResultFailed
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		result = ResultRefused
	}
	// Alertmanager's message says which alert and why; it is clipped and cleaned,
	// for it ends up in a log.
	what := text(string(msg), 300)
	if what == "" {
		what = "no message"
	}
	return &PostError{URL: endpoint, Result: result, Status: resp.StatusCode, Err: errors.New(what)}
}

// resultOf is the result label of a post's error.
func resultOf(err error) string {
	if err == nil {
		return ResultOK
	}
	var pe *PostError
	if errors.As(err, &pe) {
		return pe.Result
	}
	return ResultFailed
}

// Package api is autofix's HTTP surface, on labstack/echo v5: the JSON API under /v1
// (recommendations, remediations and their review, job history, rules, models, the
// kill switch, pipelines; docs/openapi.yaml), the on-call review page under /ui,
// /metrics, /healthz and /readyz.
//
// Every /v1 and /ui request is authenticated (a bearer token, or the review page's
// session cookie) and its role checked before anything is looked up and before its
// body is read, so a viewer asking to approve gets 403 whether or not the
// remediation exists and whatever the body. Bodies are
// size-limited, requests time-limited and rate-limited per caller, responses carry
// secure headers, and errors have one JSON shape naming the field at fault. The
// request log has request ids and who asked, never a token or a request body.
//
// api keeps to HTTP: binding requests, roles, sessions, statuses. The rules of a
// review decision (which option, what edits, the caps, the attempt's number) are the
// review package's, which the JSON API and the page both call.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/policy"
)

// Options are what the server serves.
type Options struct {
	// Ledger holds the remediations and the kill switch. Required.
	Ledger Ledger
	// Review approves and rejects remediations kept for review. Required.
	Review Reviewer
	// Recommender advises on events (POST /v1/recommendations). Required.
	Recommender Recommender
	// Classifier holds the rules in use (GET /v1/rules). Required.
	Classifier Rules
	// Models are the models in use when the server starts: without a
	// ModelRegistry, what GET /v1/models names as in use. Required.
	Models *models.Models
	// ModelRegistry holds the versions of the models, and promotes them (GET
	// /v1/models, POST /v1/models/{version}:promote...; nil: none, and the routes
	// that need one answer 503).
	ModelRegistry ModelRegistry
	// Autonomy proposes, grants and revokes autonomy to kinds of fix (GET
	// /v1/autonomy, POST /v1/autonomy:grant, :revoke, and the review page's
	// section; nil: none, and the routes answer 503).
	Autonomy Autonomy
	// Auth authenticates bearer tokens and review-page sessions. Required.
	Auth Authenticator
	// Pods is what a pipeline's pods may do (POST /v1/pipelines refuses the rest):
	// the policy's pod switches; the zero value refuses every class they can allow.
	Pods policy.Pods
	// Pipelines runs pipelines through the service (nil: no cluster, 503).
	Pipelines PipelineRuns
	// Metrics are the service's metrics (default: new ones).
	Metrics *Metrics
	// Ready reports readiness and each check by name (/readyz; nil: always ready).
	Ready func(ctx context.Context) (bool, map[string]Check)
	// OpenMetrics serves /metrics without a token.
	OpenMetrics bool
	// TrustedProxies are the proxies (an ingress, a load balancer) whose
	// X-Forwarded-For is believed: a request from one of them is the right-most
	// address of the header that is not a trusted proxy. Empty: every caller is the
	// address of its connection and the header is ignored.
	TrustedProxies []netip.Prefix
	// RatePerSecond and Burst limit each caller (a token, or an address before it
	// authenticates). Defaults 50 and 100.
	RatePerSecond float64
	Burst         int
	// BodyLimit caps request bodies (default 1 MiB + 64 KiB; a batch gets 8x).
	BodyLimit int64
	// Timeout bounds a request's handling (default 15 s).
	Timeout time.Duration
	// SecureCookies marks the review page's session cookie Secure (behind TLS).
	SecureCookies bool
	// SessionKeys sign the review page's session cookies (and their CSRF tokens),
	// each at least MinSessionKeyLen bytes: the first signs, all verify, so a key is
	// rotated by adding the new one second, then moving it first, then dropping the
	// old one once its sessions have expired (8 hours). Every replica must have the
	// same keys (ParseSessionKeys reads them from a file). None: a random key made
	// at New, which only this process knows — a single replica works, and a
	// restart logs everyone out.
	SessionKeys [][]byte
	// Certificate, if set, makes the server serve HTTPS only (HTTPServer, Serve),
	// with Strict-Transport-Security.
	Certificate *Certificate
	// Log is the server's log (default: none); Now its clock (default time.Now).
	Log *slog.Logger
	Now func() time.Time

	// failedAuth is the budget of failed authentications per address; zero: 10 a
	// second, a burst of 20 (failedAuth). Tests set one that does not refill.
	failedAuth middleware.RateLimiterMemoryStoreConfig
}

// Server is the HTTP API.
type Server struct {
	o   Options
	e   *echo.Echo
	log *slog.Logger
	ui  *ui
	// failures limits failed authentications (bad bearer tokens, failed logins to
	// the review page) per client address.
	failures *middleware.RateLimiterMemoryStore
}

// Context keys.
const (
	keyPrincipal = "autofix.principal"
	keySession   = "autofix.session"
)

// New builds the server and its routes, or returns an error naming each required
// Options field that is missing.
func New(o Options) (*Server, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.RatePerSecond <= 0 {
		o.RatePerSecond = 50
	}
	if o.Burst <= 0 {
		o.Burst = 100
	}
	if o.BodyLimit <= 0 {
		o.BodyLimit = failure.MaxPayload + 64<<10
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if len(o.SessionKeys) == 0 {
		o.Log.Info("review page: no session keys given; sessions are signed with a random key, valid on this replica until it restarts")
	}
	if o.failedAuth.Rate == 0 {
		o.failedAuth = middleware.RateLimiterMemoryStoreConfig{Rate: 10, Burst: 20, ExpiresIn: 10 * time.Minute}
	}
	s := &Server{o: o, e: echo.New(), log: o.Log, failures: middleware.NewRateLimiterMemoryStoreWithConfig(o.failedAuth)}
	s.e.Logger = o.Log
	s.e.IPExtractor = clientAddress(o.TrustedProxies)
	s.e.HTTPErrorHandler = s.errorHandler
	ui, err := newUI(s)
	if err != nil {
		return nil, err
	}
	s.ui = ui
	if err := s.routes(); err != nil {
		return nil, err
	}
	return s, nil
}

// check names the required fields that are missing.
func (o *Options) check() error {
	var errs []error
	for _, f := range []struct {
		name    string
		missing bool
	}{{"Ledger", o.Ledger == nil}, {"Review", o.Review == nil}, {"Recommender", o.Recommender == nil},
		{"Classifier", o.Classifier == nil}, {"Models", o.Models == nil}, {"Auth", o.Auth == nil}} {
		if f.missing {
			errs = append(errs, fmt.Errorf("api: Options.%s: required", f.name))
		}
	}
	return errors.Join(errs...)
}

// Handler is the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.e }

// HTTPServer wraps the handler in an http.Server with the timeouts a server facing
// a network needs, and the TLS configuration when the options have a certificate.
func (s *Server) HTTPServer(addr string) *http.Server {
	srv := &http.Server{Addr: addr, Handler: s.e, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: s.o.Timeout + 15*time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		// The server's own complaints are mostly clients that hang up mid-handshake
		// (TCP health checks, scanners): debug, in the structured log.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	if s.o.Certificate != nil {
		srv.TLSConfig = s.o.Certificate.tlsConfig()
	}
	return srv
}

// Serve serves srv (from HTTPServer) on ln until srv is shut down: HTTPS when the
// options have a certificate, plain HTTP otherwise. It returns http.ErrServerClosed
// after a shutdown.
func (s *Server) Serve(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

func (s *Server) routes() error {
	e := s.e
	e.Use(middleware.Recover())
	e.Use(middleware.RequestID())
	e.Use(s.observe)
	secure := middleware.SecureConfig{
		ContentTypeNosniff: "nosniff", XFrameOptions: "DENY", ReferrerPolicy: "no-referrer",
		ContentSecurityPolicy: "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
			"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	}
	if s.o.Certificate != nil {
		secure.HSTSMaxAge, secure.HSTSExcludeSubdomains = 365*24*3600, true
	}
	e.Use(middleware.SecureWithConfig(secure))
	timeout, err := middleware.ContextTimeoutConfig{Timeout: s.o.Timeout}.ToMiddleware()
	if err != nil {
		return err
	}
	e.Use(timeout)

	e.GET("/healthz", func(c *echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", s.readyz)
	metrics := []echo.MiddlewareFunc{}
	if !s.o.OpenMetrics {
		metrics = append(metrics, s.authenticate, s.require(auth.Viewer))
	}
	e.GET("/metrics", echo.WrapHandler(s.o.Metrics.Handler()), metrics...)

	limit, err := s.rateLimit()
	if err != nil {
		return err
	}
	// Each route checks, in order: the token (the group), the caller's rate, the
	// role, and only then the request's content type and size (jsonBody): a caller
	// who may not do something is told so whatever it sent.
	v1 := e.Group("/v1", s.authenticate, limit)
	viewer, approver, admin := s.require(auth.Viewer), s.require(auth.Approver), s.require(auth.Admin)
	body := s.jsonBody(1)
	v1.POST(`/recommendations`, s.recommend, viewer, body)
	v1.POST(`/recommendations\:batch`, s.recommendBatch, viewer, s.jsonBody(8))
	v1.GET("/remediations", s.listRemediations, viewer)
	v1.GET("/remediations/:id", s.getRemediation, viewer)
	v1.POST("/remediations/:id/approve", s.approve, approver, body)
	v1.POST("/remediations/:id/reject", s.reject, approver, body)
	v1.POST(`/remediations/:id\:correct`, s.correct, approver, body)
	v1.GET("/jobs/:namespace/:name/history", s.jobHistory, viewer)
	v1.GET("/rules", s.listRules, viewer)
	v1.POST(`/rules\:test`, s.testRules, admin, s.jsonBody(4))
	v1.POST(`/rules\:diff`, s.diffRules, admin, s.jsonBody(4))
	v1.GET("/models", s.listModels, viewer)
	v1.GET("/models/:version", s.getModel, viewer)
	v1.POST(`/models/:version\:promote`, s.changeModel(false), admin, body)
	v1.POST(`/models/:version\:rollback`, s.changeModel(true), admin, body)
	v1.GET("/models/:version/shadow", s.getShadowReport, viewer)
	v1.POST(`/models/:version\:shadow`, s.startShadow, admin, body)
	v1.POST(`/models\:stopShadow`, s.stopShadow, admin, body)
	v1.GET("/autonomy", s.listAutonomy, viewer)
	v1.POST(`/autonomy\:grant`, s.grantAutonomy, admin, body)
	v1.POST(`/autonomy\:revoke`, s.revokeAutonomy, admin, body)
	v1.GET("/policy/pause", s.getPause, viewer)
	v1.POST("/policy/pause", s.setPause, admin, body)
	v1.GET("/pipelines", s.listPipelines, viewer)
	v1.POST("/pipelines", s.startPipeline, admin, body)
	v1.GET("/pipelines/:pipeline/runs/:run", s.getPipeline, viewer)
	v1.RouteNotFound("/*", func(*echo.Context) error { return apiErr(http.StatusNotFound, "", "no such endpoint") })
	s.ui.routes(e, limit)
	return nil
}

// jsonBody is what a route that takes a JSON body checks of it, after the role: that
// it says it is JSON, and that it is at most times BodyLimit bytes.
func (s *Server) jsonBody(times int64) echo.MiddlewareFunc {
	size := middleware.BodyLimit(times * s.o.BodyLimit)
	return func(next echo.HandlerFunc) echo.HandlerFunc { return jsonOnly(size(next)) }
}

// jsonOnly refuses request bodies that do not say they are JSON (415), so that a
// form post or a mislabelled upload is not taken for an API call.
func jsonOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if ct != "application/json" {
				return apiErr(http.StatusUnsupportedMediaType, "Content-Type", "want application/json, not %q", r.Header.Get("Content-Type"))
			}
		}
		return next(c)
	}
}

// rateLimit limits each caller: its token's name once authenticated, else its
// address.
func (s *Server) rateLimit() (echo.MiddlewareFunc, error) {
	store := middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
		Rate: s.o.RatePerSecond, Burst: s.o.Burst, ExpiresIn: 5 * time.Minute})
	return middleware.RateLimiterConfig{
		Store: store,
		IdentifierExtractor: func(c *echo.Context) (string, error) {
			if p, ok := principal(c); ok {
				return "token:" + p.Name, nil
			}
			return "addr:" + c.RealIP(), nil
		},
		DenyHandler: func(c *echo.Context, _ string, _ error) error {
			c.Response().Header().Set("Retry-After", "1")
			return apiErr(http.StatusTooManyRequests, "", "rate limit exceeded: at most %g requests per second (burst %d)", s.o.RatePerSecond, s.o.Burst)
		},
		ErrorHandler: func(_ *echo.Context, err error) error { return err },
	}.ToMiddleware()
}

// observe logs each request (with its request id and who made it) and counts it.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		start := time.Now()
		err := next(c)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := http.StatusOK
		if err != nil {
			status = s.toError(err).Status
		} else if r, uErr := echo.UnwrapResponse(c.Response()); uErr == nil && r.Status != 0 {
			status = r.Status
		}
		d := time.Since(start)
		s.o.Metrics.request(method(c.Request().Method), route, status, d)
		level := slog.LevelInfo
		if route == "/healthz" || route == "/readyz" || route == "/metrics" || route == "/ui/static/*" {
			level = slog.LevelDebug
		}
		who := ""
		if p, ok := principal(c); ok {
			who = p.Name
		}
		s.log.Log(c.Request().Context(), level, "http request", "requestId", c.Response().Header().Get(echo.HeaderXRequestID),
			"method", c.Request().Method, "route", route, "path", c.Request().URL.Path, "status", status,
			"ms", float64(d.Microseconds())/1000, "who", who)
		return err
	}
}

// method is the request's method for a metric label: anything unusual is OTHER, so
// that callers cannot mint series.
func method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

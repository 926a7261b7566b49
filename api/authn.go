package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/auth"
)

// authenticate takes the bearer token of the request and sets its principal; a
// missing or unknown token is a 401 before anything else happens. Failures are
// rate-limited per client address (see failedAuth): guessing tokens gets 429s.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if err := s.bearer(c); err != nil {
			return err
		}
		return next(c)
	}
}

// bearer authenticates the request's bearer token and sets its principal, or
// returns the 401 (or, over the failed-authentication limit, the 429).
func (s *Server) bearer(c *echo.Context) error {
	h := c.Request().Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	var fail *Error
	switch {
	case h == "":
		fail = apiErr(http.StatusUnauthorized, "", "authentication required: send Authorization: Bearer <token>")
	case !ok || !strings.EqualFold(scheme, "Bearer") || secret == "":
		fail = apiErr(http.StatusUnauthorized, "", "the Authorization header must be Bearer <token>")
	}
	var p auth.Principal
	if fail == nil {
		if p, ok = s.o.Auth.AuthenticateContext(c.Request().Context(), strings.TrimSpace(secret)); !ok {
			fail = apiErr(http.StatusUnauthorized, "", "unknown or revoked token")
		}
	}
	if fail != nil {
		if err := s.failedAuth(c); err != nil {
			return err
		}
		return fail
	}
	c.Set(keyPrincipal, p)
	return nil
}

// failedAuth counts a failed authentication — a bad bearer token or a failed login
// to the review page — against the caller's address (10 per second, burst 20, one
// budget for both) and returns a 429 once the address is over it.
func (s *Server) failedAuth(c *echo.Context) *Error {
	if allowed, _ := s.failures.Allow(c.RealIP()); !allowed {
		c.Response().Header().Set("Retry-After", "1")
		return apiErr(http.StatusTooManyRequests, "", "too many failed authentications from this address: wait and try again")
	}
	return nil
}

// require lets through principals whose role allows need: a 403 otherwise, before
// the handler looks anything up.
func (s *Server) require(need auth.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			p, ok := principal(c)
			if !ok {
				return apiErr(http.StatusUnauthorized, "", "authentication required")
			}
			if !p.Role.Allows(need) {
				return apiErr(http.StatusForbidden, "", "the %s role cannot do this: it needs %s", p.Role, need)
			}
			return next(c)
		}
	}
}

func principal(c *echo.Context) (auth.Principal, bool) {
	p, ok := c.Get(keyPrincipal).(auth.Principal)
	return p, ok
}

package api

import (
	"cmp"
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"
)

// The states of a readiness check, which /readyz shows to anyone.
const (
	// CheckOK: the dependency works.
	CheckOK = "ok"
	// CheckFailing: the dependency was tried and failed (an error).
	CheckFailing = "failing"
	// CheckNotReady: not there yet (not checked yet, not consuming yet).
	CheckNotReady = "not ready"
)

// Check is the result of one readiness check.
type Check struct {
	// State is CheckOK, CheckFailing or CheckNotReady.
	State string
	// Detail says more (an error's text, which may name hosts and addresses): /readyz
	// shows it only to a caller with a token.
	Detail string
}

// Readiness is the body of /readyz: whether the service is ready, each check's
// state, and — for a caller with a token of any role — each check's detail.
type Readiness struct {
	Ready   bool              `json:"ready"`
	Checks  map[string]string `json:"checks"`
	Details map[string]string `json:"details,omitempty"`
}

// readyz answers 200 when ready and 503 when not, with each check's state. Probes
// send no token; a request with an Authorization header must be authenticated (a bad
// token is a 401 and counts as a failed authentication, so /readyz is no oracle
// for guessing tokens) and also gets the details.
func (s *Server) readyz(c *echo.Context) error {
	detailed := c.Request().Header.Get("Authorization") != ""
	if detailed {
		if err := s.bearer(c); err != nil {
			return err
		}
	}
	out := Readiness{Ready: true, Checks: map[string]string{}}
	if s.o.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
		defer cancel()
		var checks map[string]Check
		out.Ready, checks = s.o.Ready(ctx)
		if detailed {
			out.Details = make(map[string]string, len(checks))
		}
		for name, ch := range checks {
			out.Checks[name] = publicState(ch.State)
			if detailed {
				out.Details[name] = cmp.Or(ch.Detail, out.Checks[name])
			}
		}
	}
	status := http.StatusOK
	if !out.Ready {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, out)
}

// publicState keeps /readyz's states to the three documented ones, whatever a check
// says.
func publicState(s string) string {
	switch s {
	case CheckOK, CheckNotReady:
		return s
	}
	return CheckFailing
}

package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/review"
)

// Error is every error the API returns, as {"error": {"code", "message", "field"}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the part of the request at fault (a JSON path, a query or path
	// parameter), when one is.
	Field string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// The codes, one per status the API uses.
var codes = map[int]string{
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
	http.StatusTooManyRequests:       "rate_limited",
	http.StatusInternalServerError:   "internal",
	http.StatusServiceUnavailable:    "unavailable",
	http.StatusGatewayTimeout:        "timeout",
}

func apiErr(status int, field, format string, args ...any) *Error {
	return &Error{Status: status, Code: codes[status], Message: fmt.Sprintf(format, args...), Field: field}
}

func badRequest(field, format string, args ...any) *Error {
	return apiErr(http.StatusBadRequest, field, format, args...)
}

// errorHandler writes every error in the one shape. Errors of the ledger, the event
// decoder, the review service and echo itself (404, 405, 413, 429, timeouts) get
// their status; anything else is a 500 whose details stay in the server's log.
func (s *Server) errorHandler(c *echo.Context, err error) {
	if resp, uErr := echo.UnwrapResponse(c.Response()); uErr == nil && resp.Committed {
		return
	}
	e := s.toError(err)
	if e.Status == http.StatusInternalServerError {
		s.log.Error("request failed", "requestId", c.Response().Header().Get(echo.HeaderXRequestID), "err", err)
	}
	if e.Status == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="autofix"`)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(e.Status)
		return
	}
	_ = c.JSON(e.Status, map[string]*Error{"error": e})
}

func (s *Server) toError(err error) *Error {
	var e *Error
	var fe *failure.FieldError
	var te *ledger.TransitionError
	var he *echo.HTTPError
	var sc echo.HTTPStatusCoder
	var rf *review.FieldError
	var rc *review.ConflictError
	var ce *ledger.CorrectionError
	var me *ledger.ModelError
	var ae *ledger.AutonomyError
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &fe):
		return badRequest(fe.Field, "%s", fe.Problem)
	case errors.As(err, &rf):
		return badRequest(rf.Field, "%s", rf.Problem)
	case errors.As(err, &ce):
		return badRequest(ce.Field, "%s", ce.Problem)
	case errors.As(err, &me):
		return badRequest(me.Field, "%s", me.Problem)
	case errors.As(err, &ae):
		return badRequest(ae.Field, "%s", ae.Problem)
	case errors.As(err, &rc):
		return apiErr(http.StatusConflict, "", "%s", rc.Problem)
	case errors.As(err, &te), errors.Is(err, ledger.ErrConflict):
		return apiErr(http.StatusConflict, "", "%s", strings.TrimPrefix(err.Error(), "ledger: "))
	case errors.Is(err, ledger.ErrNotFound):
		return apiErr(http.StatusNotFound, "", "%s", strings.TrimPrefix(err.Error(), "ledger: "))
	case errors.As(err, &he):
		st := he.StatusCode()
		msg := he.Message
		if msg == "" {
			msg = http.StatusText(st)
		}
		return apiErr(st, "", "%s", strings.ToLower(msg[:1])+msg[1:])
	case errors.As(err, &sc):
		st := sc.StatusCode()
		return apiErr(st, "", "%s", strings.ToLower(http.StatusText(st)))
	}
	return apiErr(http.StatusInternalServerError, "", "internal error; the server's log has the details (request id in X-Request-Id)")
}

// decodeJSON reads the request body into v strictly: unknown fields and trailing data
// are errors, and an error names the field at fault.
func decodeJSON(c *echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return badRequest("", "the body holds more than one JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var mb *http.MaxBytesError
	var sc echo.HTTPStatusCoder
	switch {
	case errors.As(err, &mb):
		return apiErr(http.StatusRequestEntityTooLarge, "", "the body is over the %d-byte limit", mb.Limit)
	case errors.As(err, &sc) && sc.StatusCode() == http.StatusRequestEntityTooLarge: // echo's body limit, on a chunked body
		return apiErr(http.StatusRequestEntityTooLarge, "", "the body is over the limit")
	case errors.As(err, &te):
		return badRequest(te.Field, "want a JSON %s, not %s", te.Type.Kind(), te.Value)
	case errors.As(err, &se):
		return badRequest("", "invalid JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.EOF):
		return badRequest("", "empty body: want a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(f, "unknown field")
	}
	return badRequest("", "%v", err)
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/api/client"
)

// Exit statuses of the review commands.
const (
	exitFailure = 1
	// exitNotFound: the remediation does not exist (404).
	exitNotFound = 3
	// exitConflict: the remediation cannot take the decision as it stands (409): it
	// is not pending_review, or its chain has used its attempts.
	exitConflict = 4
)

// reviewError is a failure of a review command with its exit status and a message
// for people (already sanitized).
type reviewError struct {
	code int
	msg  string
}

func (e *reviewError) Error() string { return e.msg }

// reviewExit reports err on the command's stderr and returns the exitError that
// carries its status out; nil stays nil.
func reviewExit(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	code := exitFailure
	if re, ok := errors.AsType[*reviewError](err); ok {
		code = re.code
	}
	// The messages are sanitized where they take text from the server; this is the
	// last line of that defence, for errors from elsewhere (a decoder, the network).
	fmt.Fprintln(cmd.ErrOrStderr(), "autofix:", hideTokens(sanitizeLine(err.Error())))
	return exitError(code)
}

// tokenShape is an autofix token (auth's "afx_" and base64url), or most of one.
var tokenShape = regexp.MustCompile(`afx_[A-Za-z0-9_-]{16,}`)

// hideTokens hides in an error message whatever has the shape of a token: one given
// where a file or a URL goes (--token-file for --token) is quoted back by the error
// that the file or the URL is wrong.
func hideTokens(msg string) string {
	return tokenShape.ReplaceAllString(msg, "afx_<hidden: a token?>")
}

// apiNoEndpoint is the API's 404 message for a path it has no route for
// (api.Server's RouteNotFound), as against a remediation it does not hold.
const apiNoEndpoint = "no such endpoint"

// roleRefusal is the API's 403 message (api.require); what it names is shown as
// the role of the token.
var roleRefusal = regexp.MustCompile(`^the ([a-z]+) role cannot do this: it needs ([a-z]+)$`)

// fieldFlags names the flag behind a field the API finds fault with.
var fieldFlags = map[string]string{"reason": "--reason", "option": "--option", "state": "--state", "category": "--category",
	"namespace": "--namespace", "job": "--job", "limit": "--limit", "after": "the page cursor"}

// statusError says what an answer other than a 200 means, in the API's words
// (sanitized) and with what the user can do about it.
func (c *reviewClient) statusError(op string, a answer) error {
	var body client.ErrorBody
	apiMsg, field := "", ""
	if isJSON(a.header) && json.Unmarshal(a.body, &body) == nil {
		apiMsg = sanitizeLine(clip(body.Error.Message, 500))
		if body.Error.Field != nil {
			field = sanitizeLine(clip(*body.Error.Field, 100))
		}
	}
	fromAPI := apiMsg != ""
	if !fromAPI {
		apiMsg = fmt.Sprintf("%d %s with %s, not the API's error JSON", a.status, http.StatusText(a.status),
			orDash(sanitizeLine(clip(a.header.Get("Content-Type"), 100))))
	}
	switch a.status {
	case http.StatusUnauthorized:
		return &reviewError{exitFailure, fmt.Sprintf("%s: the token was refused (it came from %s): %s", op, c.token.from, apiMsg)}
	case http.StatusForbidden:
		if m := roleRefusal.FindStringSubmatch(apiMsg); m != nil {
			return &reviewError{exitFailure, fmt.Sprintf("%s: the token's role (%s) may not %s: it needs %s (the token came from %s)",
				op, m[1], verbOf(op), m[2], c.token.from)}
		}
		return &reviewError{exitFailure, fmt.Sprintf("%s: refused: %s (the token came from %s)", op, apiMsg, c.token.from)}
	case http.StatusNotFound:
		// Exit status 3 says the remediation does not exist: only the API's answer
		// about one says that. A list has none to miss; any other 404 is a --server
		// that is not the API's base URL (one ending in /v1, a proxy's page).
		if verb, _, _ := strings.Cut(op, " "); verb == "list" || !fromAPI || apiMsg == apiNoEndpoint {
			return &reviewError{exitFailure, fmt.Sprintf("%s: %s answered 404 (%s): is --server the API's base URL (without /v1)?",
				op, c.server, apiMsg)}
		}
		return &reviewError{exitNotFound, fmt.Sprintf("%s: not found: %s", op, apiMsg)}
	case http.StatusConflict:
		return &reviewError{exitConflict, fmt.Sprintf("%s: %s", op, apiMsg)}
	case http.StatusBadRequest:
		if f, ok := fieldFlags[field]; ok {
			field = f
		}
		if field != "" {
			return &reviewError{exitFailure, fmt.Sprintf("%s: %s: %s", op, field, apiMsg)}
		}
		return &reviewError{exitFailure, fmt.Sprintf("%s: %s", op, apiMsg)}
	case http.StatusTooManyRequests:
		return &reviewError{exitFailure, fmt.Sprintf("%s: %s; try again in %s s", op, apiMsg,
			orDash(sanitizeLine(clip(a.header.Get("Retry-After"), 20))))}
	}
	if a.status >= 300 && a.status < 400 {
		return &reviewError{exitFailure, fmt.Sprintf("%s: %s answered %d, a redirect to %q (not followed): is that the --server to use?",
			op, c.server, a.status, sanitizeLine(clip(a.header.Get("Location"), 300)))}
	}
	msg := fmt.Sprintf("%s: %s answered %d: %s", op, c.server, a.status, apiMsg)
	if id := a.header.Get("X-Request-Id"); id != "" {
		msg += fmt.Sprintf(" (request id %s, in the server's log)", sanitizeLine(clip(id, 100)))
	}
	return &reviewError{exitFailure, msg}
}

// verbOf is the verb of an op for a 403's message: "approve ev-1" -> "approve".
func verbOf(op string) string {
	verb, _, _ := strings.Cut(op, " ")
	switch verb {
	case "list", "show":
		return "read remediations"
	}
	return verb
}

// clip cuts s to at most n bytes (at a rune boundary), marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

package api

import (
	"crypto/subtle"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"

	"github.com/autofix/autofix/auth"
)

// The review page's login, sessions and forms: who is asking, and whether a post
// is a form of theirs.

func (u *ui) loginPage(c *echo.Context) error {
	return u.render(c, http.StatusOK, "login", map[string]any{"Next": safeNext(c.QueryParam("next"))})
}

func (u *ui) login(c *echo.Context) error {
	token := strings.TrimSpace(c.FormValue("token"))
	p, ok := u.s.o.Auth.AuthenticateContext(c.Request().Context(), token)
	if !ok {
		status, data := http.StatusUnauthorized, map[string]any{"Failed": true, "Next": safeNext(c.FormValue("next"))}
		if err := u.s.failedAuth(c); err != nil {
			status, data["Throttled"] = err.Status, true
		}
		return u.render(c, status, "login", data)
	}
	value, _ := u.keys.issue(auth.IDOf(token), p.Role)
	// #nosec G124 -- Secure with http.secureCookies (on by default under TLS); a plain-HTTP service cannot set it.
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: value, Path: "/ui", HttpOnly: true, Secure: u.s.o.SecureCookies,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL.Seconds())})
	u.s.log.Info("review page login", "who", p.Name, "role", p.Role)
	return c.Redirect(http.StatusSeeOther, safeNext(c.FormValue("next")))
}

// uiBodyLimit bounds the review page's form posts (a token, a reason, an option).
const uiBodyLimit = 16 << 10

// formBody takes the review page's posts as small URL-encoded forms only: at most
// uiBodyLimit bytes, and no multipart bodies (which would be spooled to disk).
func formBody(next echo.HandlerFunc) echo.HandlerFunc {
	return formsOnly(uiSize(next))
}

var uiSize = middleware.BodyLimit(uiBodyLimit)

// formsOnly refuses a post that is not a URL-encoded form (415).
func formsOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if c.Request().Method == http.MethodPost {
			ct, _, _ := mime.ParseMediaType(c.Request().Header.Get("Content-Type"))
			if ct != "application/x-www-form-urlencoded" {
				return apiErr(http.StatusUnsupportedMediaType, "Content-Type", "the review page takes forms only")
			}
		}
		return next(c)
	}
}

// safeNext keeps redirects on the review page.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/ui/"
	}
	return next
}

// logout ends the session in this browser by clearing its cookie. The session is
// not recorded anywhere, so a copy of the cookie taken before stays valid until it
// expires or its token is revoked.
func (u *ui) logout(c *echo.Context) error {
	// #nosec G124 -- clears the cookie; Secure as when it was set.
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/ui", MaxAge: -1, HttpOnly: true, Secure: u.s.o.SecureCookies,
		SameSite: http.SameSiteStrictMode})
	return c.Redirect(http.StatusSeeOther, "/ui/login")
}

// authenticate takes the session cookie: signed by one of the session keys, not
// expired, and its token still there with the role it logged in with. Without one
// it sends the browser to the login form (a post gets 401).
func (u *ui) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		sess, p, ok := u.session(c)
		if !ok {
			if c.Request().Method != http.MethodGet {
				return u.fail(c, apiErr(http.StatusUnauthorized, "", "your session has ended: log in again"))
			}
			return c.Redirect(http.StatusSeeOther, "/ui/login?next="+url.QueryEscape(c.Request().URL.RequestURI()))
		}
		c.Set(keyPrincipal, p)
		c.Set(keySession, sess)
		return next(c)
	}
}

// session is the request's live session and who holds it, if it has one.
func (u *ui) session(c *echo.Context) (session, auth.Principal, bool) {
	ck, err := c.Cookie(sessionCookie)
	if err != nil {
		return session{}, auth.Principal{}, false
	}
	sess, err := u.keys.open(ck.Value)
	if err != nil {
		if !errors.Is(err, errSessionExpired) {
			u.s.log.Debug("review page: a session cookie refused", "err", err)
		}
		return session{}, auth.Principal{}, false
	}
	// Revoked since the login, or its role changed: the session ends.
	p, ok := u.s.o.Auth.RecheckContext(c.Request().Context(), sess.token)
	if !ok || p.Role != sess.role {
		return session{}, auth.Principal{}, false
	}
	return sess, p, true
}

// csrf refuses a post whose form does not carry the session's CSRF token (403).
func (u *ui) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		sess, ok := c.Get(keySession).(session)
		if !ok || subtle.ConstantTimeCompare([]byte(c.FormValue("csrf")), []byte(sess.csrf)) != 1 {
			return u.fail(c, apiErr(http.StatusForbidden, "csrf", "the form's token does not match your session: reload the page"))
		}
		return next(c)
	}
}

func (u *ui) require(need auth.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			p, _ := principal(c)
			if !p.Role.Allows(need) {
				return u.fail(c, apiErr(http.StatusForbidden, "", "the %s role cannot do this: it needs %s", p.Role, need))
			}
			return next(c)
		}
	}
}

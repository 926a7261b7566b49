package api

import (
	"cmp"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

//go:embed ui/templates/*.html ui/static/*
var uiFiles embed.FS

const (
	sessionCookie = "autofix_session"
	// manualRetryMinutes is what the savings panel assumes one fix done by hand costs
	// an on-call engineer (look at the failure, change the spec, re-submit).
	manualRetryMinutes = 20
)

// ui is the on-call review page: server-rendered, no JavaScript, assets embedded.
// A token logs in once and gets a signed session cookie (HttpOnly, SameSite=Strict)
// that every replica can verify; forms carry the session's CSRF token.
type ui struct {
	s     *Server
	pages map[string]*template.Template
	keys  *sessionKeys
	// history is what the history page reads, bounded: a page of fixes and the
	// latest savingsWindow finished ones.
	history       historyLedger
	savingsWindow int
}

// historyLedger is what the history page reads of the ledger: bounded queries only.
type historyLedger interface {
	List(ctx context.Context, f ledger.Filter) ([]ledger.Remediation, error)
	Approvers(ctx context.Context, ids []string) (map[string]string, error)
	AttemptOutcomes(ctx context.Context, ids []string) (map[string]failure.Outcome, error)
}

// History page sizes.
const (
	// historyPage is how many fixes the history page shows at a time.
	historyPage = 50
	// savingsWindow is how many of the latest finished fixes the savings panel sums
	// up (the ledger's largest page).
	savingsWindow = 1000
)

func newUI(s *Server) (*ui, error) {
	funcs := template.FuncMap{
		"pct":        func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
		"dollars":    func(f float64) string { return fmt.Sprintf("$%.2f", f) },
		"ago":        ago,
		"res":        resources,
		"chart":      chart,
		"front":      front,
		"allows":     func(p auth.Principal, r string) bool { return p.Role.Allows(auth.Role(r)) },
		"path":       url.PathEscape,
		"categories": failure.Categories,
		"add":        func(a, b int) int { return a + b },
	}
	keys, err := newSessionKeys(s.o.SessionKeys, s.o.Now)
	if err != nil {
		return nil, err
	}
	u := &ui{s: s, pages: map[string]*template.Template{}, keys: keys, history: s.o.Ledger, savingsWindow: savingsWindow}
	for _, page := range []string{"login", "queue", "remediation", "history", "models", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(uiFiles, "ui/templates/layout.html", "ui/templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("review page %s: %w", page, err)
		}
		u.pages[page] = t
	}
	return u, nil
}

func (u *ui) routes(e *echo.Echo, limit echo.MiddlewareFunc) {
	static, _ := fs.Sub(uiFiles, "ui/static")
	e.GET("/ui/static/*", echo.WrapHandler(http.StripPrefix("/ui/static/", http.FileServerFS(static))))
	e.GET("/", func(c *echo.Context) error { return c.Redirect(http.StatusSeeOther, "/ui/") })
	// As on the JSON API, each route checks the session, then the role, and only
	// then the form (formBody) and its CSRF token.
	g := e.Group("/ui", limit)
	g.GET("/login", u.loginPage)
	g.POST("/login", u.login, formBody)
	in := g.Group("", u.authenticate)
	in.POST("/logout", u.logout, formBody, u.csrf)
	in.GET("/", u.queue)
	in.GET("/history", u.historyPage)
	in.GET("/remediations/:id", u.remediation)
	in.POST("/remediations/:id/approve", u.approve, u.require(auth.Approver), formBody, u.csrf)
	in.POST("/remediations/:id/reject", u.reject, u.require(auth.Approver), formBody, u.csrf)
	in.POST("/remediations/:id/correct", u.correct, u.require(auth.Approver), formBody, u.csrf)
	in.POST("/autonomy/grant", u.grantAutonomy, u.require(auth.Admin), formBody, u.csrf)
	in.POST("/autonomy/revoke", u.revokeAutonomy, u.require(auth.Admin), formBody, u.csrf)
	in.GET("/models", u.models)
	in.POST("/models/:version/promote", u.promote, u.require(auth.Admin), formBody, u.csrf)
	in.POST("/models/:version/rollback", u.rollback, u.require(auth.Admin), formBody, u.csrf)
	in.POST("/models/:version/shadow", u.shadow, u.require(auth.Admin), formBody, u.csrf)
	in.POST("/models/shadow/stop", u.unshadow, u.require(auth.Admin), formBody, u.csrf)
}

func (u *ui) render(c *echo.Context, status int, page string, data map[string]any) error {
	if data == nil {
		data = map[string]any{}
	}
	if p, ok := principal(c); ok {
		data["Principal"] = p
		if sess, ok := c.Get(keySession).(session); ok {
			data["CSRF"] = sess.csrf
		}
	}
	var b strings.Builder
	if err := u.pages[page].Execute(&b, data); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTML(status, b.String())
}

// fail shows an error page with the API's status and message.
func (u *ui) fail(c *echo.Context, err error) error {
	e := u.s.toError(err)
	if e.Status == http.StatusInternalServerError {
		u.s.log.Error("review page", "err", err)
	}
	return u.render(c, e.Status, "error", map[string]any{"Error": e})
}

// item is one remediation on the page, with what the page shows of it.
type item struct {
	R        ledger.Remediation
	Rec      *failure.Recommendation
	Evidence []string
	Chart    template.HTML
}

func newItem(r ledger.Remediation) item {
	it := item{R: r, Rec: r.Recommendation}
	if it.Rec != nil {
		it.Evidence = it.Rec.Classification.Evidence
		it.Chart = chart(it.Rec)
	}
	return it
}

func (u *ui) queue(c *echo.Context) error {
	ctx := c.Request().Context()
	list, err := u.s.o.Ledger.List(ctx, ledger.Filter{States: []ledger.State{ledger.PendingReview}, Limit: 200})
	if err != nil {
		return u.fail(c, err)
	}
	items := make([]item, 0, len(list))
	for _, r := range list {
		full, err := u.s.o.Ledger.Get(ctx, r.EventID) // with the chain's attempts
		if err != nil {
			return u.fail(c, err)
		}
		items = append(items, newItem(full))
	}
	pause, err := u.s.o.Ledger.PauseState(ctx)
	if err != nil {
		return u.fail(c, err)
	}
	return u.render(c, http.StatusOK, "queue", map[string]any{"Items": items, "Pause": pause, "Done": c.QueryParam("done"),
		"Autonomy": u.autonomySection(ctx)})
}

func (u *ui) remediation(c *echo.Context) error {
	id, err := remediationID(c)
	if err != nil {
		return u.fail(c, err)
	}
	r, err := u.s.o.Ledger.Get(c.Request().Context(), id)
	if err != nil {
		return u.fail(c, err)
	}
	return u.render(c, http.StatusOK, "remediation", map[string]any{"Item": newItem(r), "Done": c.QueryParam("done"), "Label": labelOf(&r)})
}

func (u *ui) approve(c *echo.Context) error {
	choice, err := formChoice(c)
	if err != nil {
		return u.fail(c, err)
	}
	p, _ := principal(c)
	id, err := remediationID(c)
	if err != nil {
		return u.fail(c, err)
	}
	if err := u.s.approveFor(c.Request().Context(), id, p, choice); err != nil {
		return u.fail(c, err)
	}
	return c.Redirect(http.StatusSeeOther, "/ui/remediations/"+url.PathEscape(id)+"?done=approved")
}

func (u *ui) reject(c *echo.Context) error {
	p, _ := principal(c)
	id, err := remediationID(c)
	if err != nil {
		return u.fail(c, err)
	}
	if err := u.s.rejectFor(c.Request().Context(), id, p, c.FormValue("reason")); err != nil {
		return u.fail(c, err)
	}
	return c.Redirect(http.StatusSeeOther, "/ui/remediations/"+url.PathEscape(id)+"?done=rejected")
}

// historyPage shows the fixes autofix made, newest first, a page at a time (the
// query's after is the cursor: the last id of the page before), under the savings
// panel. It reads a page and the savings window, whatever the ledger holds.
func (u *ui) historyPage(c *echo.Context) error {
	ctx := c.Request().Context()
	after := c.QueryParam("after")
	list, err := u.history.List(ctx, ledger.Filter{States: []ledger.State{ledger.Approved, ledger.Submitted, ledger.Succeeded,
		ledger.Failed}, Limit: historyPage, After: after})
	if err != nil {
		return u.fail(c, err)
	}
	sv, err := u.savings(ctx)
	if err != nil {
		return u.fail(c, err)
	}
	items := make([]item, 0, len(list))
	for _, r := range list {
		items = append(items, item{R: r, Rec: r.Recommendation})
	}
	next := ""
	if len(list) == historyPage {
		next = list[len(list)-1].EventID
	}
	return u.render(c, http.StatusOK, "history", map[string]any{"Items": items, "Savings": sv, "Next": next, "Paged": after != ""})
}

func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.UTC().Format("2006-01-02")
}

func resources(r failure.Resources) string {
	var parts []string
	if r.MemoryBytes > 0 {
		parts = append(parts, fmt.Sprintf("%.1f GiB", float64(r.MemoryBytes)/(1<<30)))
	}
	if r.CPUMillis > 0 {
		parts = append(parts, fmt.Sprintf("%g CPU", float64(r.CPUMillis)/1000))
	}
	if r.GPU > 0 {
		g := fmt.Sprintf("%d GPU", r.GPU)
		if r.GPUType != "" {
			g += " " + r.GPUType
		}
		parts = append(parts, g)
	}
	if r.EphemeralStorageBytes > 0 {
		parts = append(parts, fmt.Sprintf("%.0f GiB disk", float64(r.EphemeralStorageBytes)/(1<<30)))
	}
	return strings.Join(parts, ", ")
}

// shown is an option of a recommendation and its index.
type shown struct {
	I int
	O failure.Option
}

// maxRows is how many options the queue's table shows.
const maxRows = 5

// front is what the queue's table shows of a recommendation: the chosen option, then
// the other options of the Pareto front, cheapest first, at most maxRows; More is how
// many it leaves out.
func front(rec *failure.Recommendation) struct {
	Rows []shown
	More int
} {
	var out struct {
		Rows []shown
		More int
	}
	var rest []shown
	for i, o := range rec.Options {
		switch {
		case i == rec.Chosen:
			out.Rows = append(out.Rows, shown{i, o})
		case o.Pareto:
			rest = append(rest, shown{i, o})
		}
	}
	slices.SortStableFunc(rest, func(a, b shown) int { return cmp.Compare(a.O.ExpectedCost, b.O.ExpectedCost) })
	for _, r := range rest {
		if len(out.Rows) == maxRows {
			out.More++
			continue
		}
		out.Rows = append(out.Rows, r)
	}
	return out
}

// chart draws a recommendation's options as expected cost against P(success): the
// Pareto front filled, the chosen option ringed. The P(success) axis spans the
// options' range (they are often all above 90%). Only numbers reach the SVG.
func chart(rec *failure.Recommendation) template.HTML {
	if rec == nil || len(rec.Options) == 0 {
		return ""
	}
	const w, h, left, bottom, top, right = 320.0, 180.0, 40.0, 30.0, 12.0, 14.0
	maxCost, minP := 0.0, 1.0
	for _, o := range rec.Options {
		maxCost = math.Max(maxCost, o.ExpectedCost)
		minP = math.Min(minP, o.PSuccess)
	}
	if maxCost <= 0 {
		maxCost = 1
	}
	lo := math.Max(0, math.Floor((minP-0.02)*10)/10)
	x := func(c float64) float64 { return left + (w-left-right)*c/maxCost }
	y := func(p float64) float64 { return h - bottom - (h-bottom-top)*(p-lo)/(1-lo) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="options: expected cost against chance of success">`, w, h)
	fmt.Fprintf(&b, `<line class="axis" x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f"/>`, left, y(lo), w-right, y(lo))
	fmt.Fprintf(&b, `<line class="axis" x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f"/>`, left, y(lo), left, y(1))
	for _, f := range []float64{0, 0.5, 1} {
		fmt.Fprintf(&b, `<text class="lbl" x="%.1f" y="%.0f" text-anchor="middle">$%.2f</text>`, x(f*maxCost), h-bottom+12, f*maxCost)
	}
	fmt.Fprintf(&b, `<text class="lbl" x="%.0f" y="%.0f" text-anchor="middle">expected cost of the retry</text>`, left+(w-left-right)/2, h-3)
	for _, p := range []float64{lo, (lo + 1) / 2, 1} {
		fmt.Fprintf(&b, `<text class="lbl" x="%.0f" y="%.1f" text-anchor="end">%.0f%%</text>`, left-4, y(p)+3, 100*p)
	}
	fmt.Fprintf(&b, `<text class="lbl" x="%.0f" y="%.0f">P(success)</text>`, left+4, top-2)
	for i, o := range rec.Options {
		cls := "opt"
		if o.Pareto {
			cls = "opt pareto"
		}
		fmt.Fprintf(&b, `<circle class="%s" cx="%.1f" cy="%.1f" r="4"><title>option %d: %s, P(success) %.0f%%, expected $%.2f</title></circle>`,
			cls, x(o.ExpectedCost), y(o.PSuccess), i, template.HTMLEscapeString(resources(o.Resources)), 100*o.PSuccess, o.ExpectedCost)
	}
	if o, ok := rec.ChosenOption(); ok {
		fmt.Fprintf(&b, `<circle class="chosen" cx="%.1f" cy="%.1f" r="8"/><text class="lbl" x="%.1f" y="%.1f">chosen</text>`,
			x(o.ExpectedCost), y(o.PSuccess), x(o.ExpectedCost)+10, y(o.PSuccess)+14)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // #nosec G203 -- numbers and escaped text only
}

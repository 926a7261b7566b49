package api

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/registry"
)

// The review page's models section: the registry's versions, the active one, the
// one evaluated in shadow with its report, and the latest promotions; an admin's
// promote, roll-back and shadow forms, which go through the same paths as POST
// /v1/models/{version}:promote, :rollback, :shadow and /v1/models:stopShadow.

// models shows the model registry.
func (u *ui) models(c *echo.Context) error {
	list, err := u.s.modelList(c.Request().Context(), modelVersionsShown)
	if err != nil {
		return u.fail(c, err)
	}
	done := c.QueryParam("done")
	if done != "promoted" && done != "rolledback" && done != "shadowed" && done != "unshadowed" {
		done = ""
	}
	data := map[string]any{"List": list, "Done": done}
	if v := list.Shadow.Version; v != 0 && u.s.o.ModelRegistry != nil {
		// The shadow's figures are an aid too: a failed read leaves them out.
		if rep, err := u.s.o.ModelRegistry.ShadowReport(c.Request().Context(), v); err == nil {
			data["Shadow"] = NewShadowReportView(&rep)
		}
	}
	// The drift line is an aid: a ledger that cannot say leaves it out, not the page.
	if outs, err := u.s.o.Ledger.RecentPredictedOutcomes(c.Request().Context(), registry.DriftWindow); err == nil {
		data["Drift"] = newDriftView(registry.MeasureDrift(outs))
	}
	return u.render(c, http.StatusOK, "models", data)
}

// driftView is the models page's drift line.
type driftView struct {
	Attempts            int
	Predicted, Observed string // percentages
	Z                   string
	Drifting            bool
}

func newDriftView(d registry.Drift) driftView {
	return driftView{Attempts: d.Attempts, Predicted: fmt.Sprintf("%.1f%%", 100*d.Predicted), Observed: fmt.Sprintf("%.1f%%", 100*d.Observed),
		Z: fmt.Sprintf("%.1f", d.Z), Drifting: d.Drifting}
}

// promote is the promote form: a reason, and the force checkbox.
func (u *ui) promote(c *echo.Context) error {
	version, err := modelVersion(c)
	if err != nil {
		return u.fail(c, err)
	}
	force := false
	switch v := c.FormValue("force"); v {
	case "", "false":
	case "true", "on":
		force = true
	default:
		return u.fail(c, badRequest("force", "%q is not a checkbox's value", v))
	}
	p, _ := principal(c)
	if _, err := u.s.changeActive(c.Request().Context(), version, p, false, force, c.FormValue("reason")); err != nil {
		return u.fail(c, err)
	}
	return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/ui/models?done=promoted#v%d", version))
}

// rollback is the roll-back form: a reason.
func (u *ui) rollback(c *echo.Context) error {
	version, err := modelVersion(c)
	if err != nil {
		return u.fail(c, err)
	}
	p, _ := principal(c)
	if _, err := u.s.changeActive(c.Request().Context(), version, p, true, false, c.FormValue("reason")); err != nil {
		return u.fail(c, err)
	}
	return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/ui/models?done=rolledback#v%d", version))
}

// shadow is the evaluate-in-shadow form of a version: a reason.
func (u *ui) shadow(c *echo.Context) error {
	version, err := modelVersion(c)
	if err != nil {
		return u.fail(c, err)
	}
	p, _ := principal(c)
	if _, err := u.s.changeShadow(c.Request().Context(), version, p, c.FormValue("reason")); err != nil {
		return u.fail(c, err)
	}
	return c.Redirect(http.StatusSeeOther, "/ui/models?done=shadowed#shadow")
}

// unshadow is the stop-the-shadow-evaluation form: a reason.
func (u *ui) unshadow(c *echo.Context) error {
	p, _ := principal(c)
	if _, err := u.s.changeShadow(c.Request().Context(), 0, p, c.FormValue("reason")); err != nil {
		return u.fail(c, err)
	}
	return c.Redirect(http.StatusSeeOther, "/ui/models?done=unshadowed#shadow")
}

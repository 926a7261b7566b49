package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/ledger"
)

// The review page's side of graduated autonomy: the queue's section of the kinds
// proposed to become automatic and those granted, and its forms, which change
// autonomy through the same path as POST /v1/autonomy:grant and :revoke.

// autonomySection is what the queue shows of autonomy: nil without an Autonomy. A
// listing that fails is logged and shown as unavailable: the queue stays usable.
func (u *ui) autonomySection(ctx context.Context) map[string]any {
	if u.s.o.Autonomy == nil {
		return nil
	}
	l, err := u.s.autonomyList(ctx)
	if err != nil {
		u.s.log.Error("review page: reading the kinds of fix for autonomy", "err", err)
		return map[string]any{"Unavailable": true}
	}
	var proposed, granted []AutonomyKindView
	for _, k := range l.Kinds {
		switch {
		case k.Proposed:
			proposed = append(proposed, k)
		case k.Grant != nil:
			granted = append(granted, k)
		}
	}
	return map[string]any{"List": l, "Proposed": proposed, "Granted": granted}
}

// grantAutonomy is the review page's confirmation of a proposal (or an admin's
// forced grant, with the force box ticked and a reason).
func (u *ui) grantAutonomy(c *echo.Context) error { return u.changeAutonomy(c, ledger.AutonomyGrant) }

// revokeAutonomy sends a granted kind back to review.
func (u *ui) revokeAutonomy(c *echo.Context) error { return u.changeAutonomy(c, ledger.AutonomyRevoke) }

func (u *ui) changeAutonomy(c *echo.Context, action ledger.AutonomyAction) error {
	force := false
	switch v := c.FormValue("force"); v {
	case "", "false":
	case "true", "on":
		force = action == ledger.AutonomyGrant
	default:
		return u.fail(c, badRequest("force", "%q is not a checkbox's value", v))
	}
	p, _ := principal(c)
	k := kindOf(c.FormValue("category"), c.FormValue("template"), c.FormValue("jobKind"), c.FormValue("workload"))
	if _, err := u.s.changeAutonomy(c.Request().Context(), p, action, k, c.FormValue("reason"), force); err != nil {
		return u.fail(c, err)
	}
	done := "granted"
	if action == ledger.AutonomyRevoke {
		done = "revoked"
	}
	return c.Redirect(http.StatusSeeOther, "/ui/?done="+done+"#autonomy")
}

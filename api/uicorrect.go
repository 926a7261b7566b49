package api

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// The review page's side of corrections: the form on a remediation's page, which
// records through the same path as POST /v1/remediations/{id}:correct.

// correct is the review page's correction form: a category of the taxonomy, the
// retryable checkbox and a note.
func (u *ui) correct(c *echo.Context) error {
	p, _ := principal(c)
	id, err := remediationID(c)
	if err != nil {
		return u.fail(c, err)
	}
	category := c.FormValue("category")
	if category == "" {
		return u.fail(c, badRequest("category", "required: one of the taxonomy's categories"))
	}
	retryable := false
	switch v := c.FormValue("retryable"); v {
	case "", "false":
	case "true", "on":
		retryable = true
	default:
		return u.fail(c, badRequest("retryable", "%q is not a checkbox's value", v))
	}
	if _, err := u.s.correctFor(c.Request().Context(), id, p, failure.Category(category), retryable, c.FormValue("note")); err != nil {
		return u.fail(c, err)
	}
	return c.Redirect(http.StatusSeeOther, "/ui/remediations/"+url.PathEscape(id)+"?done=corrected")
}

// label is the category and retry decision a remediation's failure carries: the
// correction in force, else autofix's classification.
type label struct {
	Category  failure.Category
	Retryable bool
}

func labelOf(r *ledger.Remediation) label {
	switch {
	case r.Correction != nil:
		return label{r.Correction.Category, r.Correction.Retryable}
	case r.Recommendation != nil:
		c := r.Recommendation.Classification
		return label{c.Category, c.Retryable}
	}
	return label{r.Category, r.Category.DefaultRetryable()}
}

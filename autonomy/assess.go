package autonomy

import (
	"fmt"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// Unmet returns the thresholds of t that st does not meet, one sentence each; none
// when the kind passes. People's decisions count approvals as recommended only:
// an approval after an edit is a decision, not an approval of the recommendation.
func Unmet(t *policy.Autonomy, st *ledger.KindStats) []string {
	var out []string
	reviews, outcomes := st.Reviews(), st.Outcomes()
	if reviews < t.MinReviews {
		out = append(out, fmt.Sprintf("people decided %d of its fixes, fewer than minReviews %d", reviews, t.MinReviews))
	} else if rate := float64(st.Approved) / float64(reviews); rate < t.MinApprovalRate {
		edited := ""
		if st.Edited > 0 {
			edited = fmt.Sprintf("; %d more only after changing the fix", st.Edited)
		}
		out = append(out, fmt.Sprintf("people approved %d of %d as recommended (%.0f%%%s), under minApprovalRate %.0f%%", st.Approved,
			reviews, 100*rate, edited, 100*t.MinApprovalRate))
	}
	if n := outcomes.Total(); n < t.MinOutcomes {
		out = append(out, fmt.Sprintf("%d of its attempts ended, fewer than minOutcomes %d", n, t.MinOutcomes))
	} else if rate := float64(outcomes.Succeeded) / float64(n); rate < t.MinSuccessRate {
		out = append(out, fmt.Sprintf("%d of %d attempts succeeded (%.0f%%), under minSuccessRate %.0f%%", outcomes.Succeeded, n,
			100*rate, 100*t.MinSuccessRate))
	}
	return out
}

// Failing reports whether a granted kind's latest automatic fixes, newest first
// (true: succeeded), fail past t: over the latest t.RevertWindow of them, so many
// failed that the success rate is under t.RevertBelow even if the rest of the window
// succeeds. It decides as early as the outcome is certain — after 5 failures in a
// row with the defaults (10, 0.6) — and never on fewer failures than that. It
// returns the counts it looked at.
func Failing(t *policy.Autonomy, latest []bool) (bool, ledger.AttemptCounts) {
	var c ledger.AttemptCounts
	for i, ok := range latest {
		if i == t.RevertWindow {
			break
		}
		if ok {
			c.Succeeded++
		} else {
			c.Failed++
		}
	}
	best := float64(t.RevertWindow-c.Failed) / float64(t.RevertWindow)
	return best < t.RevertBelow, c
}

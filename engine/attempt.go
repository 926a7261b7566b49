package engine

// NextAttempt numbers a chain's next attempt. runs is how many runs the chain has
// had: the highest attempt number the ledger records for it (recorded), or the
// failed run's own number (eventAttempt, which verification has checked) when that
// is higher; a chain's first run counts as 1 whatever either says. next is the
// number of the attempt that follows, runs+1. The engine's automatic fixes and a
// reviewer's approvals both number attempts with it, so that they agree on the
// budget the policy holds a chain to.
func NextAttempt(recorded, eventAttempt int) (runs, next int) {
	runs = max(recorded, eventAttempt, 1)
	return runs, runs + 1
}

package ledger

import (
	"errors"
	"fmt"
	"slices"
)

// State is where a remediation is in its life.
type State string

// The states of a remediation. A valid event goes received -> classified ->
// recommended and then to the policy's verdict (pending_review, approved or
// rejected); a malformed message is recorded directly as rejected.
const (
	Received      State = "received"
	Classified    State = "classified"
	Recommended   State = "recommended"
	PendingReview State = "pending_review"
	Approved      State = "approved"
	Rejected      State = "rejected"
	Submitted     State = "submitted"
	Succeeded     State = "succeeded"
	Failed        State = "failed"
	Abandoned     State = "abandoned"
)

// States lists every state, in the order of a remediation's life.
func States() []State { return slices.Clone(states) }

var states = []State{
	Received, Classified, Recommended, PendingReview, Approved, Rejected,
	Submitted, Succeeded, Failed, Abandoned,
}

// transitions maps each state to the states that may follow it.
var transitions = map[State][]State{
	Received:      {Classified},
	Classified:    {Recommended},
	Recommended:   {PendingReview, Approved, Rejected},
	PendingReview: {Approved, Rejected},
	// An approved attempt is rejected when the cluster does not bear its failure out
	// (the Job is not there with that uid, did not fail, or is not watched).
	Approved:  {Submitted, Abandoned, Rejected},
	Submitted: {Succeeded, Failed, Abandoned},
}

// CanMoveTo reports whether a remediation in state s may move to state to.
func (s State) CanMoveTo(to State) bool {
	for _, next := range transitions[s] {
		if next == to {
			return true
		}
	}
	return false
}

// Final reports whether s ends a remediation: rejected, succeeded, failed or abandoned.
func (s State) Final() bool {
	switch s {
	case Rejected, Succeeded, Failed, Abandoned:
		return true
	}
	return false
}

// TransitionError is returned for a move the state machine does not allow.
type TransitionError struct {
	ID       string
	From, To State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("remediation %s: illegal transition from %s to %s", e.ID, e.From, e.To)
}

// ErrNotFound is wrapped by errors about a remediation (or cursor) the ledger does not hold.
var ErrNotFound = errors.New("ledger: not found")

// ErrConflict is wrapped by the error of a move whose remediation was not in the
// expected state (someone else moved it first), and of an attempt whose number or
// job name is already taken.
var ErrConflict = errors.New("ledger: conflict")

// checkMove returns a *TransitionError unless from may move to to.
func checkMove(id string, from, to State) error {
	if !from.CanMoveTo(to) {
		return &TransitionError{ID: id, From: from, To: to}
	}
	return nil
}

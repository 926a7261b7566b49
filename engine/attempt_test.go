package engine

import "testing"

func TestNextAttempt(t *testing.T) {
	for _, tc := range []struct {
		recorded, eventAttempt int
		runs, next             int
	}{
		{0, 0, 1, 2}, // a first failure, no attempt recorded, none on the event
		{0, 1, 1, 2},
		{0, 3, 3, 4}, // the event counts runs the ledger never saw
		{4, 2, 4, 5}, // the ledger's count wins when higher
		{-1, -5, 1, 2},
	} {
		runs, next := NextAttempt(tc.recorded, tc.eventAttempt)
		if runs != tc.runs || next != tc.next {
			t.Errorf("NextAttempt(%d, %d) = %d, %d; want %d, %d", tc.recorded, tc.eventAttempt, runs, next, tc.runs, tc.next)
		}
	}
}

package autonomy

import (
	"reflect"
	"strings"
	"testing"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

func TestUnmet(t *testing.T) {
	th := policy.DefaultAutonomy()
	tests := []struct {
		name string
		st   ledger.KindStats
		want []string
	}{
		{"passes", ledger.KindStats{Approved: 9, Rejected: 1, Reviewed: ledger.AttemptCounts{Succeeded: 8, Failed: 2}}, nil},
		{"automatic outcomes count too", ledger.KindStats{Approved: 10, Reviewed: ledger.AttemptCounts{Succeeded: 5},
			Automatic: ledger.AttemptCounts{Succeeded: 4, Failed: 1}}, nil},
		{"few reviews", ledger.KindStats{Approved: 9, Reviewed: ledger.AttemptCounts{Succeeded: 10}},
			[]string{"people decided 9 of its fixes, fewer than minReviews 10"}},
		{"rejected too often", ledger.KindStats{Approved: 8, Rejected: 2, Reviewed: ledger.AttemptCounts{Succeeded: 10}},
			[]string{"people approved 8 of 10 as recommended (80%), under minApprovalRate 90%"}},
		{"edited too often", ledger.KindStats{Approved: 9, Edited: 2, Reviewed: ledger.AttemptCounts{Succeeded: 10}},
			[]string{"people approved 9 of 11 as recommended (82%; 2 more only after changing the fix), under minApprovalRate 90%"}},
		{"few outcomes", ledger.KindStats{Approved: 10, Reviewed: ledger.AttemptCounts{Succeeded: 9}},
			[]string{"9 of its attempts ended, fewer than minOutcomes 10"}},
		{"fails too often", ledger.KindStats{Approved: 10, Reviewed: ledger.AttemptCounts{Succeeded: 7, Failed: 3}},
			[]string{"7 of 10 attempts succeeded (70%), under minSuccessRate 80%"}},
		{"nothing", ledger.KindStats{}, []string{"people decided 0 of its fixes, fewer than minReviews 10",
			"0 of its attempts ended, fewer than minOutcomes 10"}},
	}
	for _, tt := range tests {
		if got := Unmet(&th, &tt.st); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Unmet = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// outcomes parses "ssf..." (newest first) into outcomes: s succeeded, f failed.
func outcomes(s string) []bool {
	out := make([]bool, len(s))
	for i, c := range s {
		out[i] = c == 's'
	}
	return out
}

func TestFailing(t *testing.T) {
	th := policy.DefaultAutonomy() // the latest 10, revoked under 60%
	tests := []struct {
		latest string
		want   bool
	}{
		{"", false},
		{"ffff", false},           // 6 of 10 may still succeed
		{"fffff", true},           // 5 failures in a row: at most 50%
		{"sfsfsfsfsf", true},      // 50%
		{"ssssffffss", false},     // 60%
		{"ssssffffssffff", false}, // only the latest 10 count
		{"fssfsfsfsf" + strings.Repeat("s", 5), true},
	}
	for _, tt := range tests {
		if got, c := Failing(&th, outcomes(tt.latest)); got != tt.want {
			t.Errorf("Failing(%q) = %v (%+v), want %v", tt.latest, got, c, tt.want)
		}
	}
	th.RevertBelow = 0
	if got, _ := Failing(&th, outcomes("ffffffffff")); got {
		t.Error("Failing with revertBelow 0 = true, want never")
	}
}

package ledger

import (
	"encoding/json"
	"testing"

	"github.com/autofix/autofix/failure"
)

// TestEdited: an attempt is edited unless it runs the recommendation's chosen
// configuration; what was predicted of it, and how its changes are worded, do not
// count.
func TestEdited(t *testing.T) {
	ev := testEvent("e", "team-a", "train-llm", 1)
	rec := testRec(ev, failure.OOMMemory)
	other := rec.Options[0]
	other.Resources.MemoryBytes *= 2
	rec.Options = append(rec.Options, other)
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	chosen := rec.Options[0]
	reworded := chosen
	reworded.Changes, reworded.PSuccess = []string{"approved by alice"}, 0.5
	delayed := chosen
	delayed.DelaySeconds = 60
	noRetry := *rec
	noRetry.Retry, noRetry.Chosen = false, -1
	nb, err := json.Marshal(noRetry)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		rec  string
		a    Attempt
		want int
	}{
		{"the chosen option", string(b), Attempt{Option: &chosen}, 0},
		{"reworded, other predictions", string(b), Attempt{Option: &reworded}, 0},
		{"another option", string(b), Attempt{Option: &other}, 1},
		{"a delay added", string(b), Attempt{Option: &delayed}, 1},
		{"no option kept, same resources", string(b), Attempt{Resources: chosen.Resources, Params: chosen.Params}, 0},
		{"no option kept, other resources", string(b), Attempt{Resources: other.Resources, Params: other.Params}, 1},
		{"no option recommended", string(nb), Attempt{Option: &chosen}, 1},
		{"no recommendation", "", Attempt{Option: &chosen}, 1},
		{"a recommendation that does not decode", "{", Attempt{Option: &chosen}, 1},
	}
	for _, tt := range tests {
		if got := edited(tt.rec, &tt.a); got != tt.want {
			t.Errorf("%s: edited = %d, want %d", tt.name, got, tt.want)
		}
	}
}

package classifier_test

import (
	"slices"
	"testing"

	"github.com/autofix/autofix/failure"
)

// TestKnowledgeStemsMatchTheirWords: a phrase must be able to match the text it was
// written for. A phrase that ends in a letter needs a word boundary after it, so the
// stems "throttl" and "corrupt" of the message table never match "throttled",
// "throttling", "corrupted" or "corruption" (16 occurrences in the labelled corpus,
// none of the bare word "corrupt"): those entries never fire on them, in the
// evidence or as features of the model.
func TestKnowledgeStemsMatchTheirWords(t *testing.T) {
	k := defaultKnowledge(t)
	for _, tc := range []struct{ log, want string }{
		{"botocore: the request was throttled by the service", "message/transient-network"},
		{"the registry is throttling requests from this node", "message/transient-network"},
		{"RuntimeError: checkpoint shard 3 is corrupted", "message/bad-data"},
		{"zlib: data corruption detected in block 7", "message/bad-data"},
	} {
		ev := &failure.Event{Failure: failure.Signals{Reason: "Error", ExitCode: 1, LogTail: tc.log}}
		if got := hitKeys(k.Find(ev)); !slices.Contains(got, tc.want) {
			t.Errorf("Find(%q) = %v, want %s", tc.log, got, tc.want)
		}
	}
}

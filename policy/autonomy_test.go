package policy

import "time"

// grantSeq is the seq of the grants granted gives.
const grantSeq = 7

// granted is input with a grant of its own kind.
func granted(in Input) Input {
	in.Grant = &Grant{Seq: grantSeq, Category: in.Recommendation.Classification.Category, Template: in.Event.HistoryKey(),
		JobKind: in.Event.Job.Kind, Actor: "alice", At: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)}
	return in
}

package policy

import "time"

// granted is input with a grant of its own kind.
func granted(in Input) Input {
	in.Grant = &Grant{Category: in.Recommendation.Classification.Category, Template: in.Event.HistoryKey(), Actor: "alice",
		At: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)}
	return in
}

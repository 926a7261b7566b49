package ledger

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

func TestHistoryOrderAndLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		// Attempts 1..6 of template a, recorded one batch at a time; two of b in one batch.
		for i := 1; i <= 6; i++ {
			mustRecord(t, s, entry(fmt.Sprintf("a%d", i), PendingReview, entryOpt{tmpl: "a", chain: "ca", attempt: i}))
		}
		mustRecord(t, s, entry("b1", Rejected, entryOpt{tmpl: "b", ns: "other"}),
			entry("b2", Rejected, entryOpt{tmpl: "b", ns: "other", attempt: 2}))
		attempts := func(os []failure.Outcome) []int {
			var n []int
			for _, o := range os {
				n = append(n, o.Attempt)
			}
			return n
		}
		tests := []struct {
			limit int
			want  map[string][]int
		}{
			{3, map[string][]int{"team-a/a": {4, 5, 6}, "other/b": {1, 2}}},
			{1, map[string][]int{"team-a/a": {6}, "other/b": {2}}},
			{0, map[string][]int{"team-a/a": {1, 2, 3, 4, 5, 6}, "other/b": {1, 2}}},
			{100, map[string][]int{"team-a/a": {1, 2, 3, 4, 5, 6}, "other/b": {1, 2}}},
		}
		for _, tc := range tests {
			h, err := s.History(ctx, []string{"team-a/a", "other/b", "team-a/none"}, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]int{}
			for k, os := range h {
				got[k] = attempts(os)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("History(limit %d) attempts = %v, want %v", tc.limit, got, tc.want)
			}
		}
		chains, err := s.ChainAttempts(ctx, []string{"ca", "chain-b2"})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"ca": 6, "chain-b2": 2}; !reflect.DeepEqual(chains, want) {
			t.Errorf("ChainAttempts = %v, want %v", chains, want)
		}
	})
}

func TestHistorySince(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for i := 1; i <= 4; i++ {
			mustRecord(t, s, entry(fmt.Sprintf("a%d", i), PendingReview, entryOpt{tmpl: "a", chain: "ca", attempt: i}))
		}
		attempts := func(h TemplateHistory) []int {
			var n []int
			for _, o := range h.Outcomes {
				n = append(n, o.Attempt)
			}
			return n
		}
		got, err := s.HistorySince(ctx, map[string]int64{"team-a/a": 0, "team-a/none": 0}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if a := got["team-a/a"]; a.Seq != 4 || !slices.Equal(attempts(a), []int{2, 3, 4}) {
			t.Errorf("HistorySince(0, limit 3) = seq %d attempts %v, want seq 4, attempts [2 3 4]", a.Seq, attempts(a))
		}
		if n := got["team-a/none"]; n.Seq != 0 || len(n.Outcomes) != 0 {
			t.Errorf("HistorySince of a template without history = %+v, want nothing", n)
		}
		mustRecord(t, s, entry("a5", PendingReview, entryOpt{tmpl: "a", chain: "ca", attempt: 5}))
		got, err = s.HistorySince(ctx, map[string]int64{"team-a/a": 4}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if a := got["team-a/a"]; a.Seq != 5 || !slices.Equal(attempts(a), []int{5}) {
			t.Errorf("HistorySince(4) = seq %d attempts %v, want seq 5 and only the new attempt 5", a.Seq, attempts(a))
		}
		got, err = s.HistorySince(ctx, map[string]int64{"team-a/a": 5}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if a := got["team-a/a"]; a.Seq != 5 || len(a.Outcomes) != 0 {
			t.Errorf("HistorySince(5) = %+v, want seq 5 and nothing new", a)
		}
	})
}

// listFixture records ten remediations of two namespaces received a minute apart,
// two of them at the same time, and returns their ids newest first.
func listFixture(t *testing.T, s *Store) []string {
	var entries []Entry
	for i := range 10 {
		st := []State{PendingReview, Approved, Rejected}[i%3]
		o := entryOpt{ns: []string{"ns1", "ns2"}[i%2], tmpl: fmt.Sprintf("job%d", i%4), at: t0.Add(time.Duration(i) * time.Minute)}
		if i == 5 {
			o.at = t0.Add(4 * time.Minute) // ties with 4: ordered by id
		}
		if i == 8 {
			o.cat = failure.Timeout
		}
		entries = append(entries, entry(fmt.Sprintf("e%d", i), st, o))
	}
	entries = append(entries, rejected("m0", t0.Add(90*time.Second)))
	slices.Reverse(entries)
	mustRecord(t, s, entries...)
	return []string{"e9", "e8", "e7", "e6", "e5", "e4", "e3", "e2", "m0", "e1", "e0"}
}

func ids(ms []Remediation) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.EventID)
	}
	return out
}

func TestEachOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		newest := listFixture(t, s)
		var got []Remediation
		if err := s.Each(ctx, func(m Remediation) error { got = append(got, m); return nil }); err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(newest)
		slices.Reverse(want)
		if !reflect.DeepEqual(ids(got), want) {
			t.Errorf("Each order = %v, want %v", ids(got), want)
		}
		for _, m := range got {
			if hasAttempt := len(m.Attempts) == 1 && m.Attempts[0].EventID == m.EventID; hasAttempt != (m.State == Approved) {
				t.Errorf("Each: %s (%s) has attempts %+v", m.EventID, m.State, m.Attempts)
			}
		}
		stop := errors.New("stop")
		n := 0
		if err := s.Each(ctx, func(Remediation) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Errorf("Each with a failing fn = %v after %d calls, want stop after 1", err, n)
		}
		approved, err := s.Approved(ctx, 2, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(approved); !reflect.DeepEqual(got, []string{"e1", "e4"}) || len(approved[0].Attempts) != 1 {
			t.Errorf("Approved(2) = %v, want [e1 e4] with attempts", got)
		}
	})
}

func TestListFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		newest := listFixture(t, s)
		tests := []struct {
			name string
			f    Filter
			want []string
		}{
			{"all", Filter{}, newest},
			{"states", Filter{States: []State{Approved, PendingReview}}, []string{"e9", "e7", "e6", "e4", "e3", "e1", "e0"}},
			{"category", Filter{Category: failure.Timeout}, []string{"e8"}},
			{"namespace", Filter{Namespace: "ns2"}, []string{"e9", "e7", "e5", "e3", "e1"}},
			{"job", Filter{Job: "job1-1"}, []string{"e9", "e5", "e1"}},
			{"since until", Filter{Since: t0.Add(2 * time.Minute), Until: t0.Add(5 * time.Minute)}, []string{"e5", "e4", "e3", "e2"}},
			{"combined", Filter{States: []State{Rejected}, Namespace: "ns1", Since: t0.Add(time.Minute)}, []string{"e8", "e2"}},
			{"limit", Filter{Limit: 3}, newest[:3]},
			{"after", Filter{After: "e5", Limit: 2}, []string{"e4", "e3"}},
		}
		for _, tc := range tests {
			got, err := s.List(ctx, tc.f)
			if err != nil {
				t.Fatalf("List(%s) = %v", tc.name, err)
			}
			if !reflect.DeepEqual(ids(got), tc.want) {
				t.Errorf("List(%s) = %v, want %v", tc.name, ids(got), tc.want)
			}
		}
		// Walking the pages finds every remediation once, newest first.
		var walked []string
		f := Filter{Limit: 3}
		for {
			page, err := s.List(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			walked = append(walked, ids(page)...)
			f.After = page[len(page)-1].EventID
		}
		if !reflect.DeepEqual(walked, newest) {
			t.Errorf("pages = %v, want %v", walked, newest)
		}
		if _, err := s.List(ctx, Filter{After: "nope"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("List(after an unknown id) = %v, want ErrNotFound", err)
		}
		counts, err := s.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[State]int{}
		for _, st := range states {
			want[st] = 0
		}
		want[PendingReview], want[Approved], want[Rejected] = 4, 3, 4
		if !reflect.DeepEqual(counts, want) {
			t.Errorf("Counts() = %v, want %v", counts, want)
		}
	})
}

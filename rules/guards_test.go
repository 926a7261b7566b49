package rules_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/rules"
)

// A rule that counts its phrases only when they come after the last error the job
// printed (docs/rules.md, "A phrase a job can recover from") names each phrase twice:
// in the has() that finds it and in the lastIndexOf() list that places it. A phrase
// added to the first list and not to the second is found, but never placed after the
// traceback, so the guard silently drops every log with a traceback in it.
var (
	guardHas   = regexp.MustCompile(`(?s)^\s*\(?\s*has\(([^)]*)\)`)
	guardPlace = regexp.MustCompile(`lastIndexOf\(logLower, "((?:[^"\\]|\\.)*)"\)`)
	quoted     = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
)

// guardMarker is in every rule whose phrases count only after the last traceback.
const guardMarker = `lastIndexOf(logLower, "traceback (most recent call last)")`

func TestGuardedPhrasesArePlaced(t *testing.T) {
	rs, err := classifier.Load(rules.FS)
	if err != nil {
		t.Fatalf("the default rules do not load: %v", err)
	}
	checked := 0
	for _, r := range rs.Rules() {
		if !strings.Contains(r.Expr, guardMarker) {
			continue
		}
		m := guardHas.FindStringSubmatch(r.Expr)
		if m == nil {
			continue // the guard stands on its own (no phrase list to mirror)
		}
		var placed []string
		for _, p := range guardPlace.FindAllStringSubmatch(r.Expr, -1) {
			placed = append(placed, p[1])
		}
		isPlaced := func(phrase string) bool {
			for _, p := range placed {
				if p != "traceback (most recent call last)" && strings.Contains(phrase, p) {
					return true
				}
			}
			return false
		}
		var missing []string
		some := false
		for _, q := range quoted.FindAllStringSubmatch(m[1], -1) {
			if isPlaced(q[1]) {
				some = true
			} else {
				missing = append(missing, q[1])
			}
		}
		if !some {
			continue // the guard belongs to another clause (cuda-out-of-memory's DALI phrase)
		}
		checked++
		for _, phrase := range missing {
			t.Errorf("%s (%s:%d): has(%q) has no lastIndexOf(logLower, ...) placing it after the last traceback",
				r.ID, r.File, r.Line, phrase)
		}
	}
	if checked < 7 {
		t.Fatalf("checked %d guarded rules, want the default set's 7: has the guard's form changed?", checked)
	}
}

package rules_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/rules"
)

// A rule whose phrases count only after the last error the job printed (docs/rules.md,
// "A phrase a job can recover from") says so with logHasAfter([phrases], [markers]).
// Where it also finds the phrases with has() (unreachable-host: a phrase in the
// message counts with no traceback in the log), a phrase in the has() list and not in
// the logHasAfter() list is found but never placed, so every log with a traceback in
// it silently drops that phrase.
var (
	guardHas   = regexp.MustCompile(`(?s)^\s*\(?\s*has\(([^)]*)\)`)
	guardAfter = regexp.MustCompile(`(?s)logHasAfter\(\[([^\]]*)\]`)
	quoted     = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
)

func TestGuardedPhrasesArePlaced(t *testing.T) {
	rs, err := classifier.Load(rules.FS)
	if err != nil {
		t.Fatalf("the default rules do not load: %v", err)
	}
	guarded, checked := 0, 0
	for _, r := range rs.Rules() {
		afters := guardAfter.FindAllStringSubmatch(r.Expr, -1)
		if afters == nil {
			continue
		}
		guarded++
		m := guardHas.FindStringSubmatch(r.Expr)
		if m == nil {
			continue // the guard finds its phrases itself
		}
		var placed []string
		for _, a := range afters {
			for _, q := range quoted.FindAllStringSubmatch(a[1], -1) {
				placed = append(placed, q[1])
			}
		}
		all := strings.Join(placed, "\x00")
		var missing []string
		some := false
		for _, q := range quoted.FindAllStringSubmatch(m[1], -1) {
			if strings.Contains(all, q[1]) {
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
			t.Errorf("%s (%s:%d): has(%q) is not in its logHasAfter() phrases, so a traceback after it is never looked for",
				r.ID, r.File, r.Line, phrase)
		}
	}
	if guarded < 9 || checked < 1 {
		t.Fatalf("found %d rules with logHasAfter() (%d also with has()), want the default set's 9 (1): has the guard's form changed?",
			guarded, checked)
	}
}

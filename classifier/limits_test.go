package classifier

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
)

// hostileRules are conditions that, before the rule language was cut down, compiled
// and then could exhaust memory or a core; each must now be refused when it loads.
// FuzzLoad seeds from them too.
var hostileRules = []struct {
	name, expr string
	// want is a substring of the error.
	want string
}{
	{"repeat", `repeat(log, 300000) != ""`, "repeat() is not allowed"},
	{"repeat through a pipe", `(log | repeat(300000)) != ""`, "repeat() is not allowed"},
	{"reduce doubling over a range", `reduce(1..40, #acc + #acc, log) != ""`, "not allowed"},
	{"reduce doubling", `reduce(lines, #acc + #acc, log) != ""`, "not allowed"},
	{"huge range", `len(1..1000000000) > 0`, "ranges (..) are not allowed"},
	{"loop over a huge range", `any(1..1000000000, # < 0)`, "not allowed"},
	{"replace explosion", `replace(log, "", log) != ""`, "replace() is not allowed"},
	{"join explosion", `join(lines, log) != ""`, "join() is not allowed"},
	{"split", `len(split(log, "")) > 0`, "split() is not allowed"},
	{"toJSON", `toJSON(lines) != ""`, "toJSON() is not allowed"},
	{"string of anything", `string(lines) != ""`, "string() is not allowed"},
	{"upper copies", `upper(log) != ""`, "upper() is not allowed"},
	{"nested loops", `count(lines, count(lines, true) > 0) > 0`, "not allowed"},
	{"closure", `all(lines, {len(#) > 0})`, "not allowed"},
	{"sort", `len(sort(lines)) > 0`, "sort() is not allowed"},
	{"regex from a variable", `message matches log`, "matches is not allowed"},
	{"literal matches", "message matches `x+y`", "matches is not allowed"},
	{"trim with a cutset", `trim(log, "abcdefghij") != ""`, "trim() takes at most 1 argument"},
	{"map literal", `{"a": log}.a != ""`, "map literals are not allowed"},
	{"reserved state", `_st != nil`, "the name _st is reserved"},
	{"internal grep", `_grep(logLower, 9999, _st)`, "reserved"},
	{"internal concat", `_concat(log, log, _st) != ""`, "reserved"},
	{"env map", `$env.log != ""`, "reserved"},
	{"let a reserved name", `let _st = 1; true`, "reserved"},
	{"unknown function", `sprintf("%0999999d", 1) != ""`, "sprintf() is not a function of the rule language"},
	{"untyped +", `(exitCode > 0 ? log : 1) + log != ""`, "type of its operands is not known"},
	{"many nodes", "exitCode == " + strings.Repeat("1+", 1000) + "1", "nodes (names, literals, operators, calls), over the limit of 500"},
	{"deep nesting", strings.Repeat("(", 20000) + "true" + strings.Repeat(")", 20000), "over the limit of 8192"},
	{"long pattern", `has("` + strings.Repeat("x", 2000) + `")`, "a pattern of 2000 bytes, over the limit of 1024"},
	{"huge regex program", "logGrep(`[a-z]{1000}x`)", "RE2 instructions, over the limit of 1000 in all"},
	{"many regexes", strings.Repeat("logGrep(`[a-z]{300}x`) or ", 4) + "false", "RE2 instructions, over the limit of 1000 in all"},
}

func TestLoadRefusesUnboundedRules(t *testing.T) {
	for _, tt := range hostileRules {
		t.Run(tt.name, func(t *testing.T) {
			file := "rules:\n" + rule("good", `has("x")`, "timeout", 1, 0.9) + rule("hostile", tt.expr, "timeout", 1, 0.9)
			rs, err := Load(mapFS(map[string]string{"bad.yaml": file}))
			if err == nil {
				t.Fatalf("Load accepted %.80q (%d rules), want it refused", tt.expr, len(rs.Rules()))
			}
			var le *LoadError
			if !errors.As(err, &le) || le.File != "bad.yaml" || le.Rule != "hostile" {
				t.Errorf("Load error %v does not unwrap to a *LoadError naming bad.yaml and the rule", err)
			}
			if got := err.Error(); !strings.HasPrefix(got, "bad.yaml:10: hostile: expr: ") || !strings.Contains(got, tt.want) {
				t.Errorf("Load error = %.300s\nwant it to start with %q and contain %q", got, "bad.yaml:10: hostile: expr: ", tt.want)
			}
		})
	}
}

// bigLog is a full 64 KiB log tail.
func bigLog() *failure.Event {
	return event("Error", 1, "boom", strings.Repeat("step 1 loss 0.5 lr 3e-4 and more text\n", failure.MaxLogTail/38))
}

// TestConcatIsBounded builds strings with + until they are far over the budget: the
// rule must fail with an error, having allocated about the budget, not the strings.
func TestConcatIsBounded(t *testing.T) {
	doubling := "let a = log + log; let b = a + a; let c = b + b; let d = c + c; let e = d + d; let f = e + e; " +
		"let g = f + f; let h = g + g; len(h) > 0"
	tests := []struct {
		name, expr string
	}{
		{"let doubling", doubling}, // 64 KiB -> 16 MiB in 8 steps
		{"long chain", strings.TrimSuffix(strings.Repeat("log + ", 40), " + ") + ` != ""`}, // 40 x 64 KiB
	}
	ev := bigLog()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("grow", tt.expr, "timeout", 1, 0.9)}), Options{})
			c.Classify(ev) // warm the pool
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got, errs := c.ClassifyErrors(ev)
			runtime.ReadMemStats(&after)
			if len(errs) != 1 || errs[0].Rule != "grow" || !strings.Contains(errs[0].Error(), "builds more than 1048576 bytes of strings") {
				t.Errorf("rule errors = %v, want grow to fail on the string budget", errs)
			}
			if got.Category != failure.Unknown {
				t.Errorf("category = %s, want unknown: a rule that fails does not match", got.Category)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
				t.Errorf("the classification allocated %d bytes, want at most 4 MiB (the 1 MiB budget and the event)", alloc)
			}
		})
	}
}

// TestConcatBudgetIsPerRule checks that strings within the budget work, and that each
// rule has its own budget.
func TestConcatBudgetIsPerRule(t *testing.T) {
	expr := `let s = log + log + log + log + log; len(s) == 5 * len(log)` // 896 KiB built, with the steps
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("one", expr, "timeout", 1, 0.9) +
		rule("two", expr, "timeout", 1, 0.9) + rule("three", expr, "timeout", 1, 0.9)})
	got, errs := New(rs, Options{}).ClassifyErrors(bigLog())
	if len(errs) > 0 || len(got.Rules) != 3 {
		t.Errorf("rules %v, errors %v; want all three to match", got.Rules, errs)
	}
}

// TestAllowedConstructs checks that what the language keeps still works.
func TestAllowedConstructs(t *testing.T) {
	ev := &failure.Event{ID: "e", Job: failure.Job{Name: "j", Params: map[string]string{"lr": "0.1"}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, Message: "  boom  ", LogTail: "a\nb\n"}}
	for _, expr := range []string{
		`let s = reason + "/" + trim(message); s == "OOMKilled/boom"`,
		`reason + ":" == "OOMKilled:"`,
		`exitCode + 1 == 138 and signal * 2 == 18 and exitCode % 2 == 1`,
		`len(lines) == 2 and lines[1] == "b" and lines[-1] == "b" and lines[0] in ["a", "z"]`,
		`log[-2:] == "b\n" and log[0:1] == "a" and !(exitCode == 1) && true || false`,
		`log[0:1] == "a" and reason startsWith "OOM" and reason endsWith "Killed" and reason contains "MK"`,
		`params.lr == "0.1" and "lr" in params and not ("x" in params) and (nil ?? "y") == "y" and resources?.memory == 0`,
		`max(memoryRatio, 0.5) == 0.5 and abs(-1) == 1 and int("7") == 7 and float("0.5") == 0.5`,
		`hasPrefix(reason, "OOM") and indexOf(reason, "K") == 3 and trimPrefix(reason, "OOM") == "Killed"`,
		`exitCode > 128 ? signal == 9 : false`,
		`if exitCode == 137 { has("b") } else { false }`,
		`not (reason in ["Error"]) and reason not in ["Error"]`,
	} {
		t.Run(expr, func(t *testing.T) {
			rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("r", expr, "timeout", 1, 0.9)})
			got, errs := New(rs, Options{}).ClassifyErrors(ev)
			if len(errs) > 0 || got.Category != failure.Timeout {
				t.Errorf("category %s, errors %v; want the rule to match", got.Category, errs)
			}
		})
	}
}

// TestHostileFileKeepsTheOldSet is what a reload relies on: a file with a hostile rule
// does not load at all, so the classifier built from the previous set stays in force
// and unchanged.
func TestHostileFileKeepsTheOldSet(t *testing.T) {
	good := "rules:\n" + rule("oom", `exitCode == 137`, "oom_memory", 10, 0.9)
	c := New(mustLoad(t, map[string]string{"a.yaml": good}), Options{})
	for _, tt := range hostileRules {
		rs, err := Load(mapFS(map[string]string{"a.yaml": good, "b.yaml": "rules:\n" + rule("hostile", tt.expr, "timeout", 1, 0.9)}))
		if err == nil || rs != nil {
			t.Fatalf("%s: Load = %v, %v; want no rule set and an error", tt.name, rs, err)
		}
	}
	if got := c.Classify(event("Error", 137, "", "")); got.Category != failure.OOMMemory || len(got.Rules) != 1 {
		t.Errorf("the old set classifies %+v, want oom_memory by oom", got)
	}
}

func TestContextStopsClassification(t *testing.T) {
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("r", `exitCode == 1`, "timeout", 1, 0.9) + `tests:
  - name: t
    event: {failure: {exitCode: 1}}
    expect: {category: timeout}
`})
	c := New(rs, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cl, _, err := c.ClassifyContext(ctx, event("Error", 1, "", ""))
	if err != nil || cl.Category != failure.Timeout {
		t.Errorf("ClassifyContext = %s, %v; want timeout", cl.Category, err)
	}
	if failures, err := c.CheckContext(ctx); err != nil || len(failures) > 0 {
		t.Errorf("CheckContext = %v, %v; want no failures", failures, err)
	}
	cancel()
	if _, _, err := c.ClassifyContext(ctx, event("Error", 1, "", "")); !errors.Is(err, context.Canceled) {
		t.Errorf("ClassifyContext after cancel: err = %v, want context.Canceled", err)
	}
	if _, err := c.CheckContext(ctx); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `test "t"`) {
		t.Errorf("CheckContext after cancel: err = %v, want context.Canceled naming the test", err)
	}
	rs, err = LoadContext(ctx, mapFS(map[string]string{"a.yaml": "rules:\n" + rule("r", `exitCode == 1`, "timeout", 1, 0.9)}))
	if rs != nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "a.yaml:2 (r)") {
		t.Errorf("LoadContext after cancel = %v, %v; want no rule set and context.Canceled naming the rule", rs, err)
	}
}

// TestRegexRunsOncePerLine checks that a grep whose guard has several literals runs
// its regex once on a line that holds all of them, so that its cost is bounded by
// the text's length times its program.
func TestRegexRunsOncePerLine(t *testing.T) {
	rs := mustLoad(t, map[string]string{"a.yaml": "rules:\n" + rule("r", "logGrep(`(alpha|bravo|charl) \\d+`)", "timeout", 1, 0.9)})
	re := rs.Rules()[0].patterns[0].re
	if len(re.clauses) != 1 || len(re.clauses[0]) != 3 {
		t.Fatalf("guard = %v, want one clause of three literals", re.clauses)
	}
	log := strings.Repeat("alpha 1 bravo 2 charl 3\n", 5)
	st := new(state)
	st.prepare(event("Error", 1, "", log), rs, nil)
	defer st.release()
	runs := 0
	re.lines(strings.ToLower(log), st, func(int, int) bool { runs++; return true })
	if runs != 5 {
		t.Errorf("the regex matched %d times on 5 lines, want once a line", runs)
	}
}

// loadBytes returns the bytes Load allocates for n rules, each with its own literals.
func loadBytes(t *testing.T, n int) uint64 {
	t.Helper()
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		b.WriteString(rule(fmt.Sprintf("r%d", i), fmt.Sprintf(`has("alpha%d", "bravo%d") and exitCode == 1`, i, i), "timeout", 1, 0.9))
	}
	fsys := mapFS(map[string]string{"a.yaml": b.String()})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := Load(fsys); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestLoadCostIsLinear checks that loading four times the rules costs about four
// times as much: each rule compiles against its own variables, not the whole set's,
// so that a large candidate (a 4 MiB rules:test body) cannot make Load quadratic.
func TestLoadCostIsLinear(t *testing.T) {
	small, large := loadBytes(t, 200), loadBytes(t, 800)
	if ratio := float64(large) / float64(small); ratio > 6 {
		t.Errorf("Load of 800 rules allocated %.1f times as much as of 200 (%d and %d bytes), want about 4", ratio, large, small)
	}
}

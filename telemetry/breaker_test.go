package telemetry

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	b := breaker{threshold: 2, cooldown: time.Minute}
	now := t0
	step := func(what string, wantAllow, ok, wantOpened, wantClosed bool) {
		t.Helper()
		if got := b.allow(now); got != wantAllow {
			t.Fatalf("%s: allow() = %v, want %v", what, got, wantAllow)
		}
		if !wantAllow {
			return
		}
		if opened, closed := b.done(now, ok); opened != wantOpened || closed != wantClosed {
			t.Fatalf("%s: done(%v) = opened %v, closed %v; want %v, %v", what, ok, opened, closed, wantOpened, wantClosed)
		}
	}
	step("a success", true, true, false, false)
	step("a first failure", true, false, false, false)
	step("a success resets the count", true, true, false, false)
	step("a failure", true, false, false, false)
	step("a second failure in a row opens", true, false, true, false)
	step("open: short-circuited", false, false, false, false)
	now = now.Add(time.Minute - time.Nanosecond)
	step("just before the cooldown's end", false, false, false, false)
	now = now.Add(time.Nanosecond)
	if !b.allow(now) {
		t.Fatal("after the cooldown: allow() = false, want a probe")
	}
	if b.allow(now) {
		t.Fatal("while a probe is out: allow() = true, want one probe at a time")
	}
	if opened, closed := b.done(now, false); opened || closed {
		t.Fatalf("a failed probe: opened %v, closed %v; want it open still (no new opening)", opened, closed)
	}
	step("after a failed probe: open for another cooldown", false, false, false, false)
	now = now.Add(time.Minute)
	step("a probe that succeeds closes", true, true, false, true)
	step("closed", true, true, false, false)
	step("one failure after closing does not open", true, false, false, false)
}

package sim

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
)

// firstFailure is a run's first attempt that failed, with what it takes to render it.
type firstFailure struct {
	ru  *run
	opt failure.Option
	out result
}

// firstFailures runs the first attempt of the scenario's first jobs runs, in Run's
// order, and returns those that failed.
func firstFailures(s *Scenario, jobs int) []firstFailure {
	var fs []firstFailure
	ts := s.templates()
	for k, n := 0, 0; n < jobs; k++ {
		for _, t := range ts {
			if n == jobs {
				break
			}
			n++
			ru := s.newRun(t, k)
			if out := s.attempt(ru, 0, t.config); !out.ok {
				fs = append(fs, firstFailure{ru, t.config, out})
			}
		}
	}
	return fs
}

// withoutText is ev with its failure text cleared: what must stay the simulator's.
func withoutText(ev failure.Event) failure.Event {
	ev.Failure.Reason, ev.Failure.ExitCode, ev.Failure.Message, ev.Failure.LogTail, ev.Failure.LogTruncated = "", 0, "", "", false
	return ev
}

// TestRealTextMatchesTheCause: every drawn message carries the category of the
// simulated cause (and the retry decision of its category), and everything but the
// text stays the simulator's.
func TestRealTextMatchesTheCause(t *testing.T) {
	s := defaultScenario(t)
	c := testCorpus(t, 4, everyCategory())
	causes := map[failure.Category]int{}
	for _, f := range firstFailures(s, 3000) {
		for a := range 2 {
			ev, use := s.failureEvent(f.ru, a, f.opt, f.out, c)
			if use != realText {
				t.Fatalf("%s: text %v, want a real message (the corpus has every category)", ev.ID, use)
			}
			cat, retryable, _, ok := parseMarker(ev.Failure.LogTail)
			if !ok || cat != f.out.cause || retryable != f.out.cause.DefaultRetryable() {
				t.Fatalf("%s, caused by %s: drew %q, want a message labelled %s/%v",
					ev.ID, f.out.cause, ev.Failure.LogTail, f.out.cause, f.out.cause.DefaultRetryable())
			}
			if got, want := withoutText(ev), withoutText(s.event(f.ru, a, f.opt, f.out)); !reflect.DeepEqual(got, want) {
				t.Fatalf("real text changed more than the text:\n got %+v\nwant %+v", got, want)
			}
			causes[f.out.cause]++
		}
	}
	if len(causes) < 5 {
		t.Errorf("only causes %v failed; the test needs a mix", causes)
	}

	// The same with the embedded messages, whichever they are: each drawn text is one
	// of a message of the cause's category.
	embedded, err := RealText()
	if err != nil {
		t.Fatal(err)
	}
	oomKept := 0
	for _, f := range firstFailures(s, 3000) {
		ev, use := s.failureEvent(f.ru, 0, f.opt, f.out, embedded)
		pool := embedded.Messages(f.out.cause, f.out.cause.DefaultRetryable())
		if (use == realText) != (len(pool) > 0) {
			t.Fatalf("%s, caused by %s: text %v with %d messages of the category", ev.ID, f.out.cause, use, len(pool))
		}
		if use != realText {
			continue
		}
		sig, rendered := ev.Failure, s.event(f.ru, 0, f.opt, f.out).Failure
		if !slices.ContainsFunc(pool, func(m Message) bool {
			if kubernetesReason(rendered.Reason) && m.Reason != rendered.Reason {
				// Kubernetes' message stays with its reason; the real text is the log.
				return sig.Message == rendered.Message && sig.LogTail == m.printed()
			}
			return m.Message == sig.Message && m.LogTail == sig.LogTail
		}) {
			t.Fatalf("%s, caused by %s: its text is no %s message of %s", ev.ID, f.out.cause, f.out.cause, embeddedName)
		}
		// A reason Kubernetes sets stays, whatever the program printed.
		if kubernetesReason(rendered.Reason) && (sig.Reason != rendered.Reason || sig.ExitCode != rendered.ExitCode) {
			t.Fatalf("%s: reason %q exit %d, want the simulated %q exit %d", ev.ID, sig.Reason, sig.ExitCode, rendered.Reason, rendered.ExitCode)
		}
		if rendered.Reason == "OOMKilled" {
			oomKept++
		}
	}
	if oomKept == 0 {
		t.Error("no OOMKilled failure drew real text: the reason check tested nothing")
	}
}

// TestRealTextKeying: a recurring job that fails for a cause of its own prints the
// same text every time; what its surroundings cause reads differently from one
// attempt to the next. Every cause is tried on the same failed runs.
func TestRealTextKeying(t *testing.T) {
	s := defaultScenario(t)
	c := testCorpus(t, 40, everyCategory())
	fs := firstFailures(s, 3000)
	for _, tt := range []struct {
		cause   failure.Category
		perTemp bool // one text per template
	}{
		{failure.OOMMemory, true}, {failure.OOMGPU, true}, {failure.DiskFull, true}, {failure.Timeout, true},
		{failure.UserCode, true}, {failure.DataError, true}, {failure.ConfigError, true},
		{failure.NetworkTransient, false}, {failure.Preempted, false}, {failure.Hardware, false},
		{failure.SchedulingCapacity, false}, {failure.ImagePull, false}, {failure.DependencyUnavailable, false},
		{failure.Unknown, false},
	} {
		texts := map[int]map[string]bool{} // by template
		for _, f := range fs {
			out := f.out
			out.cause = tt.cause
			for a := range 3 {
				ev, _ := s.failureEvent(f.ru, a, f.opt, out, c)
				if texts[f.ru.t.index] == nil {
					texts[f.ru.t.index] = map[string]bool{}
				}
				texts[f.ru.t.index][ev.Failure.LogTail] = true
			}
		}
		varied := false
		for _, ts := range texts {
			varied = varied || len(ts) > 1
		}
		if varied == tt.perTemp {
			t.Errorf("%s: texts vary within a template: %v; want %v", tt.cause, varied, !tt.perTemp)
		}
	}
}

// textsOf runs the scenario with the recording policy and returns the events it saw.
func textsOf(t *testing.T, s *Scenario, opts Options) ([]failure.Event, Result) {
	t.Helper()
	rec := &recorder{}
	r, err := Run(s, rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rec.events, r
}

func TestRealTextIsDeterministic(t *testing.T) {
	s := defaultScenario(t)
	s.Text = TextReal
	c := testCorpus(t, 20, everyCategory())
	a, ra := textsOf(t, s, Options{Jobs: 1500, Corpus: c})
	b, rb := textsOf(t, s, Options{Jobs: 1500, Corpus: c})
	if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(ra, rb) {
		t.Fatal("two runs with the same seed drew different texts")
	}
	if ra.Text != TextReal || ra.RealText != len(a) || ra.RenderedFallback != 0 || len(ra.NoRealText) != 0 {
		t.Errorf("result text %q, %d real, %d rendered, %v without; want real, %d, 0, none",
			ra.Text, ra.RealText, ra.RenderedFallback, ra.NoRealText, len(a))
	}
	// The draws themselves follow the seed: the same failures, drawn for with
	// another seed, get other texts, whatever their cause.
	other := *s
	other.Seed++
	fs := firstFailures(s, 1500)
	for _, cause := range failure.Categories() {
		same := 0
		for _, f := range fs {
			out := f.out
			out.cause = cause
			ev, _ := s.failureEvent(f.ru, 0, f.opt, out, c)
			again, _ := s.failureEvent(f.ru, 0, f.opt, out, c)
			if !reflect.DeepEqual(ev, again) {
				t.Fatalf("%s: two draws for the same failure differ", ev.ID)
			}
			if ev2, _ := other.failureEvent(f.ru, 0, f.opt, out, c); ev2.Failure.LogTail == ev.Failure.LogTail {
				same++
			}
		}
		if same > len(fs)/2 {
			t.Errorf("%s: another seed drew the same text for %d of %d failures", cause, same, len(fs))
		}
	}
}

// TestRenderedTextIsUnchanged: a scenario without text, or with text: rendered,
// gives the simulator's own text, and real text changes nothing but the text.
func TestRenderedTextIsUnchanged(t *testing.T) {
	s := defaultScenario(t)
	unset, r0 := textsOf(t, s, Options{Jobs: 1500})
	s.Text = TextRendered
	rendered, r1 := textsOf(t, s, Options{Jobs: 1500, Corpus: testCorpus(t, 3, everyCategory())})
	if !reflect.DeepEqual(unset, rendered) || !reflect.DeepEqual(r0, r1) {
		t.Fatal("text: rendered differs from a scenario without text")
	}
	if r0.Text != TextRendered || r0.RealText != 0 || r0.RenderedFallback != 0 {
		t.Errorf("rendered result: text %q, %d real, %d rendered; want rendered, 0, 0", r0.Text, r0.RealText, r0.RenderedFallback)
	}
	for _, ev := range rendered {
		if _, _, _, ok := parseMarker(ev.Failure.LogTail); ok {
			t.Fatalf("%s carries a real message with rendered text", ev.ID)
		}
	}
	s.Text = TextReal
	real, _ := textsOf(t, s, Options{Jobs: 1500, Corpus: testCorpus(t, 3, everyCategory())})
	if len(real) != len(rendered) {
		t.Fatalf("%d events with real text, %d rendered: the recording policy's workload must not depend on the text", len(real), len(rendered))
	}
	for i := range real {
		if got, want := withoutText(real[i]), withoutText(rendered[i]); !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d: real text changed more than the text:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

// TestRealTextFallsBackToRenderedText: failures of a category without real messages
// keep the simulator's text, and the result counts them and names their causes.
func TestRealTextFallsBackToRenderedText(t *testing.T) {
	s := defaultScenario(t)
	rendered, _ := textsOf(t, s, Options{Jobs: 2000})
	s.Text = TextReal
	// Memory OOMs have real messages; timeouts only ones labelled not retryable,
	// which a simulated timeout (retryable) never draws.
	c := testCorpus(t, 3, map[failure.Category][]bool{failure.OOMMemory: {true}, failure.Timeout: {false}})
	real, r := textsOf(t, s, Options{Jobs: 2000, Corpus: c})
	n := 0
	for i, ev := range real {
		cat, _, _, ok := parseMarker(ev.Failure.LogTail)
		switch {
		case ok && cat != failure.OOMMemory:
			t.Fatalf("%s drew a %s message", ev.ID, cat)
		case ok:
			n++
		case !reflect.DeepEqual(ev, rendered[i]):
			t.Fatalf("%s has neither a real message nor the rendered text:\n got %+v\nwant %+v", ev.ID, ev, rendered[i])
		}
	}
	if r.RealText != n || r.RealText+r.RenderedFallback != len(real) || n == 0 || r.RenderedFallback == 0 {
		t.Errorf("counted %d real and %d rendered of %d events (%d real seen); want both counted, adding up", r.RealText, r.RenderedFallback, len(real), n)
	}
	if slices.Contains(r.NoRealText, failure.OOMMemory) || !slices.Contains(r.NoRealText, failure.Timeout) {
		t.Errorf("NoRealText = %v, want timeout and not oom_memory", r.NoRealText)
	}
	order := failure.Categories()
	if !slices.IsSortedFunc(r.NoRealText, func(a, b failure.Category) int { return slices.Index(order, a) - slices.Index(order, b) }) {
		t.Errorf("NoRealText = %v, want the taxonomy's order", r.NoRealText)
	}
}

// TestRealTextKeepsKubernetesMessages: Kubernetes reports the reason it set with its
// own message, whatever the program printed: an evicted pod carries the kubelet's
// eviction message, which names the limit it went over. A real message of another
// reason gives the log only. (Once the real message replaced the kubelet's, and a
// storage eviction read with real text named no storage at all.)
func TestRealTextKeepsKubernetesMessages(t *testing.T) {
	s := defaultScenario(t)
	c := testCorpus(t, 4, everyCategory())
	evicted := 0
	for _, f := range firstFailures(s, 3000) {
		out := f.out
		out.cause = failure.DiskFull
		ev, use := s.failureEvent(f.ru, 0, f.opt, out, c)
		rendered := s.event(f.ru, 0, f.opt, out).Failure
		if use != realText || rendered.Reason != "Evicted" {
			continue
		}
		evicted++
		sig := ev.Failure
		if sig.Reason != "Evicted" || sig.Message != rendered.Message || !strings.Contains(sig.Message, "ephemeral local storage") {
			t.Fatalf("%s: reason %q message %q, want the kubelet's eviction %q", ev.ID, sig.Reason, sig.Message, rendered.Message)
		}
		if cat, _, _, ok := parseMarker(sig.LogTail); !ok || cat != failure.DiskFull {
			t.Fatalf("%s: log %q, want the real disk_full message's text", ev.ID, sig.LogTail)
		}
	}
	if evicted == 0 {
		t.Fatal("no storage eviction drew real text: the test tested nothing")
	}
	// A real message with the reason Kubernetes set carries Kubernetes' message: it
	// replaces the rendered one.
	node := `{"id":"n-1","job":{"name":"j","kind":"batch"},"failure":{"reason":"Evicted","exitCode":137,` +
		`"message":"The node was low on resource: ephemeral-storage. ","logTail":"step 3"},` +
		`"expected":{"category":"disk_full","retryable":true},"source":"https://example.invalid/issues/2"}`
	same, err := ParseCorpus(strings.NewReader(node + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	drew := false
	for _, f := range firstFailures(s, 3000) {
		out := f.out
		out.cause = failure.DiskFull
		ev, use := s.failureEvent(f.ru, 0, f.opt, out, same)
		if use != realText {
			continue
		}
		if sig := ev.Failure; sig.Message != "The node was low on resource: ephemeral-storage. " || sig.LogTail != "step 3" {
			t.Fatalf("%s: message %q log %q, want the real eviction's own", ev.ID, sig.Message, sig.LogTail)
		}
		drew = true
		break
	}
	if !drew {
		t.Fatal("no failure drew the real eviction: the same-reason case tested nothing")
	}
	m := Message{Message: "OSError: [Errno 28] No space left on device", LogTail: "step 90\nstep 91\n"}
	if got, want := m.printed(), "step 90\nstep 91\nOSError: [Errno 28] No space left on device"; got != want {
		t.Errorf("printed() = %q, want %q", got, want)
	}
}

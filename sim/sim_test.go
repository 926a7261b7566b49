package sim

import (
	"go/build"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
)

func defaultScenario(t testing.TB) *Scenario {
	t.Helper()
	s, err := Builtin("default")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBuiltinScenariosAreValid(t *testing.T) {
	names := Scenarios()
	if !slices.Contains(names, "default") || len(names) < 3 {
		t.Fatalf("Scenarios() = %v, want default and at least two more", names)
	}
	for _, name := range names {
		if _, err := Builtin(name); err != nil {
			t.Errorf("Builtin(%q): %v", name, err)
		}
	}
	if _, err := Builtin("nope"); err == nil || !strings.Contains(err.Error(), `no built-in scenario "nope"`) {
		t.Errorf("Builtin(nope) = %v", err)
	}
}

func TestParseScenarioNamesTheBadField(t *testing.T) {
	base, err := scenarioFS.ReadFile("scenarios/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ from, to, want string }{
		{"jobs: 6000", "jobs: 0", "jobs: want 1 to 10000000"},
		{"retryBudget: 3", "retryBudget: 0", "retryBudget: want 1 to 10"},
		{"requestFactor: {median: 1.8, sigma: 0.35}", "requestFactor: {median: -1, sigma: 0.35}", "requestFactor: want median > 0"},
		{"userCode: 0.125", "userCode: 1.5", "failures.gpu.userCode: want 0 to 1"},
		{"- {value: nvidia-l4, weight: 0.25}", "- {value: nvidia-x9, weight: 0.25}", `gpuTypes[0]: "nvidia-x9" is not in the catalogue`},
		{"- {value: 8, weight: 0.14}", "- {value: 16, weight: 0.14}", "gpuCounts[3]: want 1 to cluster.maxGPUs (8), got 16"},
		{"noise: 0.05", "noise: 0.05\nnoize: 1", "field noize not found"},
		{"noise: 0.05", "noise: 0.05\ntext: printed", `text: want rendered or real, got "printed"`},
		{"diskLimitShare: 0.25", "diskLimitShare: 2", "diskLimitShare: want 0 to 1, got 2"},
		{"maxEphemeralStorageGiB: 1500", "maxEphemeralStorageGiB: 0", "cluster.maxEphemeralStorageGiB: want a positive size"},
		{"batch: 0.35}", "batch: 0.35, serving: 1}", `kinds: unknown kind "serving"`},
	} {
		data := strings.Replace(string(base), tt.from, tt.to, 1)
		if data == string(base) {
			t.Fatalf("%q not in the default scenario", tt.from)
		}
		if _, err := ParseScenario([]byte(data)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("with %q: error = %v, want it to contain %q", tt.to, err, tt.want)
		}
	}
}

// recorder is a policy that retries with the same configuration and keeps what it saw.
type recorder struct {
	events  []failure.Event
	history [][]failure.Outcome
}

func (*recorder) Name() string { return "recorder" }
func (r *recorder) Retry(ev *failure.Event, h []failure.Outcome) (failure.Option, bool) {
	r.events = append(r.events, *ev)
	r.history = append(r.history, h)
	return failure.Option{Resources: ev.Job.Resources, Params: ev.Job.Params}, true
}

func TestEventsLookLikeTheWatchersAndSurviveTheDecoder(t *testing.T) {
	s := defaultScenario(t)
	rec := &recorder{}
	if _, err := Run(s, rec, Options{Jobs: 1500}); err != nil {
		t.Fatal(err)
	}
	if len(rec.events) < 100 {
		t.Fatalf("only %d failures seen", len(rec.events))
	}
	reasons := map[string]int{}
	for _, ev := range rec.events {
		reasons[ev.Failure.Reason]++
		if ev.ID == "" || ev.Job.Name == "" || ev.Job.Template == "" || ev.Job.Attempt < 1 {
			t.Fatalf("event without identity: %+v", ev)
		}
		if ev.Failure.Reason == "OOMKilled" && (ev.Failure.ExitCode != 137 || ev.Failure.Usage.PeakMemoryBytes != ev.Job.Resources.MemoryBytes) {
			t.Errorf("OOMKilled event %s: exit %d, peak %d of limit %d; want 137 and the peak at the limit",
				ev.ID, ev.Failure.ExitCode, ev.Failure.Usage.PeakMemoryBytes, ev.Job.Resources.MemoryBytes)
		}
		if strings.Contains(ev.Failure.LogTail, "CUDA out of memory") && ev.Job.Resources.GPU == 0 {
			t.Errorf("CUDA OOM on a CPU job: %s", ev.ID)
		}
		if ev.Failure.Reason == "Evicted" {
			limit := ev.Job.Resources.EphemeralStorageBytes
			if limit == 0 || ev.Failure.Usage.PeakEphemeralStorageBytes != limit ||
				!strings.Contains(ev.Failure.Message, "exceeds the total limit of containers "+failure.FormatBytes(limit)) {
				t.Errorf("eviction %s: limit %d, peak %d, message %q; want the peak at the limit, named in the message",
					ev.ID, limit, ev.Failure.Usage.PeakEphemeralStorageBytes, ev.Failure.Message)
			}
		}
	}
	for _, want := range []string{"OOMKilled", "Error", "DeadlineExceeded", "Evicted"} {
		if reasons[want] == 0 {
			t.Errorf("no %s failures in %v", want, reasons)
		}
	}
}

// TestPoliciesSeeNoGroundTruth enforces the separation between the simulator's
// truth and what a policy sees: the Policy interface takes only the domain's event and
// outcomes (no type of this package), and the packages that decide retries do not
// import the simulator.
func TestPoliciesSeeNoGroundTruth(t *testing.T) {
	m, ok := reflect.TypeFor[Policy]().MethodByName("Retry")
	if !ok {
		t.Fatal("Policy has no Retry method")
	}
	domain := reflect.TypeFor[failure.Event]().PkgPath()
	var check func(reflect.Type)
	check = func(typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Pointer, reflect.Slice:
			check(typ.Elem())
		default:
			if typ.PkgPath() != "" && typ.PkgPath() != domain {
				t.Errorf("Policy.Retry uses %s from %s: policies may see only the domain types", typ, typ.PkgPath())
			}
		}
	}
	for i := range m.Type.NumIn() {
		check(m.Type.In(i))
	}
	for i := range m.Type.NumOut() {
		check(m.Type.Out(i))
	}
	for _, pkg := range []string{"models", "optimizer", "recommender", "classifier"} {
		p, err := build.Import("github.com/autofix/autofix/"+pkg, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range append(p.Imports, p.TestImports...) {
			if strings.HasSuffix(imp, "/sim") {
				t.Errorf("package %s imports the simulator", pkg)
			}
		}
	}
	// The outcomes a policy is given record what a cluster records, not why runs
	// failed: the category stays empty.
	rec := &recorder{}
	if _, err := Run(defaultScenario(t), rec, Options{Jobs: 600}); err != nil {
		t.Fatal(err)
	}
	for _, h := range rec.history {
		for _, o := range h {
			if o.Category != "" {
				t.Fatalf("history outcome carries its cause %q", o.Category)
			}
		}
	}
}

func TestRunIsDeterministic(t *testing.T) {
	s := defaultScenario(t)
	p, _ := Baseline("double")
	a, err := Run(s, p, Options{Jobs: 2000})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Run(s, p, Options{Jobs: 2000})
	if !reflect.DeepEqual(a, b) {
		t.Errorf("two runs with the same seed differ:\n%+v\n%+v", a, b)
	}
	s.Seed++
	c, _ := Run(s, p, Options{Jobs: 2000})
	if reflect.DeepEqual(a, c) {
		t.Error("a different seed gave the same result")
	}
}

func TestBaselinesAgainstTheOracle(t *testing.T) {
	s := defaultScenario(t)
	results := map[string]Result{}
	for _, name := range Baselines() {
		p, err := Baseline(name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Run(s, p, Options{Jobs: 3000})
		if err != nil {
			t.Fatal(err)
		}
		results[name] = r
	}
	none, same, double, vpa, orc := results["none"], results["same"], results["double"], results["vpa"], results["oracle"]
	if none.Retries != 0 || none.Fixed != 0 || none.Cost != 0 {
		t.Errorf("none retried: %+v", none)
	}
	if orc.FixRate != 1 || orc.FalseRetries != 0 || math.Abs(orc.CostVsOracle-1) > 1e-9 {
		t.Errorf("oracle: fix rate %v, false retries %d, cost vs oracle %v; want 1, 0, 1", orc.FixRate, orc.FalseRetries, orc.CostVsOracle)
	}
	if orc.FirstRetryRate < 0.95 {
		t.Errorf("oracle first-retry fix rate %.3f; only fresh bad luck should stop it", orc.FirstRetryRate)
	}
	for _, r := range []Result{same, double, vpa} {
		if r.Failed != orc.Failed || r.Remediable != orc.Remediable {
			t.Errorf("%s saw %d failures (%d remediable), the oracle %d (%d): the workload must not depend on the policy",
				r.Policy, r.Failed, r.Remediable, orc.Failed, orc.Remediable)
		}
		if r.FalseRetries == 0 {
			t.Errorf("%s retries everything, so it must retry code failures too", r.Policy)
		}
	}
	oom := func(r Result) *CauseResult { return r.ByCause[failure.OOMMemory] }
	// Doubling fixes every memory OOM but those of runs that then also outgrow their
	// local storage, which it does not touch.
	if oom(same).Fixed >= oom(double).Fixed || float64(oom(double).Fixed) < 0.9*float64(oom(double).Remediable) {
		t.Errorf("memory OOMs fixed: same %d, double %d of %d; doubling should fix nearly all and a plain retry few",
			oom(same).Fixed, oom(double).Fixed, oom(double).Remediable)
	}
	if oom(vpa).FirstRetryFixed >= oom(double).FirstRetryFixed {
		t.Errorf("VPA's 20%% bump fixed %d OOMs on the first retry, doubling %d; the smaller bump should fix fewer",
			oom(vpa).FirstRetryFixed, oom(double).FirstRetryFixed)
	}
}

func BenchmarkRunDouble(b *testing.B) {
	s := defaultScenario(b)
	p, _ := Baseline("double")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Run(s, p, Options{Jobs: 1000}); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParseScenario parses arbitrary scenario files: each is rejected with an error,
// or is valid and runs with consistent counts.
func FuzzParseScenario(f *testing.F) {
	for _, name := range Scenarios() {
		data, err := scenarioFS.ReadFile("scenarios/" + name + ".yaml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("name: x\njobs: 1\n"))
	double, err := Baseline("double")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseScenario(data)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("ParseScenario accepted an invalid scenario: %v", err)
		}
		s.Templates = min(s.Templates, 60) // simulate 60 runs, of 60 templates at most
		r, err := Run(s, double, Options{Jobs: 60})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if r.Fixed > r.Remediable || r.Remediable > r.Failed || r.Failed > r.Jobs || r.Jobs != 60 {
			t.Fatalf("inconsistent counts: %+v", r)
		}
	})
}

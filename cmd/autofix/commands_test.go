package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
)

func TestSimulateJSON(t *testing.T) {
	code, out, errOut := runCmd(t, "", "simulate", "--policy", "double", "--jobs", "1500", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"policy", "jobs", "failed", "remediable", "fixed", "fixRate", "firstRetryFixRate",
		"retries", "cost", "oracleCost", "costVsOracle", "falseRetries", "wastedCost"} {
		if _, ok := r[k]; !ok {
			t.Errorf("field %q missing from %s", k, out)
		}
	}
	num := func(k string) float64 { f, _ := r[k].(float64); return f }
	if r["policy"] != "double" || num("jobs") != 1500 {
		t.Errorf("policy %v, jobs %v: want double, 1500", r["policy"], r["jobs"])
	}
	if !(num("fixed") <= num("remediable") && num("remediable") <= num("failed") && num("failed") <= num("jobs")) {
		t.Errorf("want fixed <= remediable <= failed <= jobs, got %v", out)
	}
	if num("failed") == 0 || num("retries") == 0 {
		t.Fatalf("nothing failed or was retried: %s", out)
	}
	if got, want := num("fixRate"), num("fixed")/num("remediable"); math.Abs(got-want) > 1e-9 {
		t.Errorf("fixRate %v, want fixed/remediable = %v", got, want)
	}
	if got, want := num("costVsOracle"), num("cost")/num("oracleCost"); math.Abs(got-want) > 1e-6 {
		t.Errorf("costVsOracle %v, want cost/oracleCost = %v", got, want)
	}
	if num("wastedCost") > num("cost") {
		t.Errorf("wasted %v more than spent %v", num("wastedCost"), num("cost"))
	}
	// The default price of a person's time: 30 minutes at $100 an hour.
	priced, _ := r["priced"].(map[string]any)
	pnum := func(k string) float64 { f, _ := priced[k].(float64); return f }
	unfixed := num("remediable") - num("fixed")
	total := num("cost") + num("rerunCost") + 50*unfixed
	if pnum("unfixed") != unfixed || math.Abs(pnum("totalCost")-total) > 1e-6 ||
		math.Abs(pnum("costPerFix")-total/num("remediable")) > 1e-6 || unfixed == 0 || num("rerunCost") == 0 {
		t.Errorf("priced %v: want %v unfixed, total %v = cost + rerunCost + $50 each", priced, unfixed, total)
	}
}

func TestSimulateCompareWritesTableAndPlot(t *testing.T) {
	png := filepath.Join(t.TempDir(), "p.png")
	code, out, errOut := runCmd(t, "", "simulate", "--compare", "--jobs", "1200", "--scenario", "tight", "--plot", png)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, p := range []string{"none", "same", "double", "vpa", "autofix", "oracle"} {
		if !strings.Contains(out, "\n"+strings.Repeat(" ", 9-len(p))+p+"  ") {
			t.Errorf("no row for %s in\n%s", p, out)
		}
	}
	data, err := os.ReadFile(png)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("%s is not a PNG", png)
	}
}

func TestSimulateRejectsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--policy", "triple"}, `--policy: unknown policy "triple"`},
		{[]string{"--policy", "double,double"}, "--policy: double twice"},
		{[]string{"--on-call-minutes", "-1"}, "--on-call-minutes: want 0 to 10080, got -1"},
		{[]string{"--on-call-minutes", "NaN"}, "--on-call-minutes: want 0 to 10080, got NaN"},
		{[]string{"--on-call-minutes", "half"}, `"--on-call-minutes"`},
		{[]string{"--on-call-rate", "-100"}, "--on-call-rate: want 0 to 10000 dollars, got -100"},
		{[]string{"--on-call-rate", "+Inf"}, "--on-call-rate: want 0 to 10000 dollars, got +Inf"},
		{[]string{"--jobs", "-5"}, "--jobs -5"},
		{[]string{"--retries", "20"}, "retryBudget"},
		{[]string{"--plot", "x.png"}, "--plot needs --compare"},
		{[]string{"--scenario", "nope"}, "nope"},
	} {
		code, _, errOut := runCmd(t, "", append([]string{"simulate"}, c.args...)...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("simulate %v: exit %d, stderr %q; want an error naming %q", c.args, code, errOut, c.want)
		}
	}
}

func TestTrainPrintsEvaluationAndWritesArtifact(t *testing.T) {
	dir := t.TempDir()
	artifact := filepath.Join(dir, "m.json")
	examples := filepath.Join(dir, "ex.jsonl")
	code, out, errOut := runCmd(t, "", "train", "--jobs", "3000", "--templates", "300", "--seed", "5",
		"--out", artifact, "--dump-examples", examples)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"memory is enough: n=", "AUC=", "Brier=", "predicted observed", "runtime: mean absolute error"} {
		if !strings.Contains(out, want) {
			t.Errorf("evaluation lacks %q:\n%s", want, out)
		}
	}
	data, err := os.ReadFile(artifact)
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.Load(data)
	if err != nil {
		t.Fatalf("the written artifact does not load: %v", err)
	}
	if !strings.HasPrefix(m.Name, "default-seed5-") || m.Evaluation == nil {
		t.Errorf("artifact name %q, evaluation %v: want the scenario and seed, and the evaluation", m.Name, m.Evaluation)
	}

	// The dumped examples train the same models again, from a file.
	again := filepath.Join(dir, "again.json")
	if code, _, errOut := runCmd(t, "", "train", "--examples", examples, "--out", again); code != 0 {
		t.Fatalf("train --examples: exit %d: %s", code, errOut)
	}
	data2, err := os.ReadFile(again)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := models.Load(data2)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Evaluation.Memory.N != m.Evaluation.Memory.N || m2.Evaluation.Memory.Brier != m.Evaluation.Memory.Brier {
		t.Errorf("training from the dumped examples differs: %+v vs %+v", m2.Evaluation.Memory, m.Evaluation.Memory)
	}

	// The trained models drive recommendations.
	code, out, errOut = runCmd(t, oomEvent+"\n", "recommend", "--models", artifact)
	if code != 0 || !strings.Contains(out, `"retry":true`) {
		t.Errorf("recommend with the trained models: exit %d, %s %s", code, out, errOut)
	}
}

const oomEvent = `{"id":"m1","job":{"name":"etl-7","template":"etl","kind":"batch","resources":{"cpu":"2","memory":"4Gi"}},` +
	`"failure":{"reason":"OOMKilled","exitCode":137,"durationSeconds":600,"usage":{"peakMemory":"4Gi"}}}`

func TestRecommend(t *testing.T) {
	dir := t.TempDir()
	var hist strings.Builder
	for i := range 6 {
		// Earlier runs of the template succeeded at 8 GiB, peaking at 5.5 GiB.
		hist.WriteString(`{"template":"etl","attempt":1,"resources":{"cpu":"2","memory":"8Gi"},"succeeded":true,` +
			`"durationSeconds":` + []string{"590", "600", "610", "605", "595", "600"}[i] + `,"usage":{"peakMemory":"5.5Gi"}}` + "\n")
	}
	history := writeFile(t, dir, "history.jsonl", hist.String())
	userError := `{"id":"u1","job":{"name":"fit","template":"fit"},"failure":{"reason":"Error","exitCode":1,` +
		`"logTail":"Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\nNameError: name 'foo' is not defined"}}`
	in := oomEvent + "\n{broken\n" + userError + "\n"
	code, out, errOut := runCmd(t, in, "recommend", "--history", history, "-")
	if code != 1 || !strings.Contains(errOut, "1 line(s) of standard input could not be read") {
		t.Errorf("exit %d, stderr %q: want 1 and the count of bad lines", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), out)
	}

	var oom failure.Recommendation
	if err := json.Unmarshal([]byte(lines[0]), &oom); err != nil {
		t.Fatal(err)
	}
	if !oom.Retry || oom.Classification.Category != failure.OOMMemory || len(oom.Options) == 0 || oom.Explanation == "" {
		t.Fatalf("OOM: want a retry with options and an explanation, got %s", lines[0])
	}
	chosen := oom.Options[oom.Chosen]
	// The history says 5.5 GiB peaks; the chosen limit must cover them, without
	// going wild.
	if m := chosen.Resources.MemoryBytes; m < 11<<29 || m > 12<<30 {
		t.Errorf("chosen memory %s: want between 5.5 GiB and 12 GiB", failure.FormatBytes(m))
	}
	if !chosen.Pareto || chosen.PFix < 0.9 || chosen.ExpectedCost <= 0 || len(chosen.Changes) == 0 {
		t.Errorf("chosen option %+v: want it on the front, likely to fix, costed and explained", chosen)
	}

	if !strings.Contains(lines[1], `"line":2`) || !strings.Contains(lines[1], "payload") {
		t.Errorf("bad line: got %s", lines[1])
	}

	var user failure.Recommendation
	if err := json.Unmarshal([]byte(lines[2]), &user); err != nil {
		t.Fatal(err)
	}
	if user.Retry || len(user.Options) != 0 || user.Classification.Retryable || !strings.Contains(user.Explanation, "not retried") {
		t.Errorf("user code error: want no retry, no options and a reason, got %s", lines[2])
	}
}

func TestRecommendBadHistory(t *testing.T) {
	dir := t.TempDir()
	history := writeFile(t, dir, "h.jsonl", `{"attempt":1,"succeeded":true}`+"\n")
	code, _, errOut := runCmd(t, oomEvent, "recommend", "--history", history)
	if code == 0 || !strings.Contains(errOut, "h.jsonl:1: template: required") {
		t.Errorf("exit %d, stderr %q: want the file, line and field", code, errOut)
	}
}

func TestTrainClassifier(t *testing.T) {
	out := filepath.Join(t.TempDir(), "model.json")
	// Two folds and few iterations: the command is under test, not the model, and the
	// test trains five times (--check retrains), under the race detector in CI.
	code, stdout, errOut := runCmd(t, "", "train-classifier", "--out", out, "--folds", "2", "--max-iterations", "25",
		"../../rules/testdata/dev.jsonl", "../../rules/testdata/holdout-1.jsonl")
	if code != 0 || !strings.Contains(stdout, "trained on 341 labelled messages") || !strings.Contains(stdout, "cross-validated (2 folds)") ||
		!strings.Contains(stdout, "<- chosen") {
		t.Fatalf("exit %d: %s %s", code, stdout, errOut)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	m, err := classifier.ReadModel(f, out)
	_ = f.Close()
	if err != nil {
		t.Fatalf("artifact does not load: %v", err)
	}
	if info := m.Info(); info.Examples != 341 || len(info.Sources) != 2 || info.Sources[0] != "../../rules/testdata/dev.jsonl" {
		t.Errorf("artifact info %+v: want 341 examples from dev.jsonl and holdout-1.jsonl", info)
	}
	// The artifact is what classify --model reads.
	code, stdout, errOut = runCmd(t, `{"id":"e","job":{"name":"j"},"failure":{"reason":"Error","exitCode":1,"logTail":"the job died\nthe storage gateway said: OSError: [Errno 28] No space left on device"}}`,
		"classify", "--model", out, "-")
	if code != 0 || !strings.Contains(stdout, `"category":"disk_full"`) {
		t.Errorf("classify --model: exit %d, %s %s", code, stdout, errOut)
	}
	// --check retrains from what the artifact records: the same bytes pass, any change fails.
	if code, stdout, errOut := runCmd(t, "", "train-classifier", "--check", out); code != 0 || !strings.Contains(stdout, "is what 341 labelled messages train") {
		t.Errorf("--check of a fresh artifact: exit %d, %s %s", code, stdout, errOut)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(t.TempDir(), "stale.json")
	if err := os.WriteFile(stale, bytes.Replace(data, []byte(`"temperature":`), []byte(`"temperature":1.5e0,"x":`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, "", "train-classifier", "--check", stale); code == 0 || !strings.Contains(errOut, "is stale") {
		t.Errorf("--check of a changed artifact: exit %d, %q", code, errOut)
	}
	// Retrained on a machine that rounds otherwise (arm64: 1.5e-8 at most), the
	// artifact passes; a weight moved further is stale.
	for _, tt := range []struct {
		delta float32
		ok    bool
	}{{1e-8, true}, {1e-3, false}} {
		moved := filepath.Join(t.TempDir(), "moved.json")
		if err := os.WriteFile(moved, moveFirstWeight(t, data, tt.delta), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, errOut := runCmd(t, "", "train-classifier", "--check", moved)
		if tt.ok && (code != 0 || !strings.Contains(stdout, "(not byte for byte")) {
			t.Errorf("--check of an artifact with a weight moved %v: exit %d, %q %q; want it passed, not byte for byte", tt.delta, code, stdout, errOut)
		}
		if !tt.ok && (code == 0 || !strings.Contains(errOut, "is stale (.weights[0] differs)")) {
			t.Errorf("--check of an artifact with a weight moved %v: exit %d, %q; want it stale at .weights[0]", tt.delta, code, errOut)
		}
	}
	if code, _, errOut := runCmd(t, "", "train-classifier", "/no/such.jsonl"); code == 0 || !strings.Contains(errOut, "no such file") {
		t.Errorf("a missing file: exit %d, %q", code, errOut)
	}
}

// TestTrainClassifierCVVerbose: --cv -v lists each failure the held-out classifier got
// wrong, with its source, the list a rule author reads for what the model cannot learn
// from the other folds.
func TestTrainClassifierCVVerbose(t *testing.T) {
	args := []string{"train-classifier", "--cv", "--folds", "2", "--max-iterations", "25", "../../rules/testdata/holdout-1.jsonl"}
	code, quiet, errOut := runCmd(t, "", args...)
	if code != 0 || !strings.Contains(quiet, "category accuracy:") || strings.Contains(quiet, "mistakes:") {
		t.Fatalf("--cv: exit %d, %s %s", code, quiet, errOut)
	}
	code, verbose, errOut := runCmd(t, "", append(args, "-v")...)
	if code != 0 || !strings.HasPrefix(verbose, quiet) {
		t.Fatalf("--cv -v: exit %d; want the report of --cv, then the mistakes: %s %s", code, verbose, errOut)
	}
	mistakes := regexp.MustCompile(`(?m)^  line \d+ ho-\d+( \(ambiguous\))?: want \w+/(true|false), got \w+/(true|false) \(rules \[.*\]\) https://`).FindAllString(verbose, -1)
	m := regexp.MustCompile(`category accuracy: +[0-9.]+ \((\d+)/(\d+)\)`).FindStringSubmatch(quiet)
	right, _ := strconv.Atoi(m[1])
	total, _ := strconv.Atoi(m[2])
	if len(mistakes) == 0 || len(mistakes) < total-right {
		t.Errorf("--cv -v lists %d mistakes; the report counts %d wrong categories of %d:\n%s", len(mistakes), total-right, total, verbose)
	}
}

func TestRecommendQuotas(t *testing.T) {
	dir := t.TempDir()
	quotas := writeFile(t, dir, "q.json", `{"small": {"memory": "4Gi", "cpu": "8"}}`)
	ev := strings.Replace(oomEvent, `"template":"etl"`, `"template":"etl","namespace":"small"`, 1)
	code, out, errOut := runCmd(t, ev+"\n"+oomEvent+"\n", "recommend", "--quotas", quotas, "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"retry":false`) || !strings.Contains(lines[0], "quota") ||
		!strings.Contains(lines[1], `"retry":true`) {
		t.Errorf("want no retry within small's 4Gi (the job needs more) and a retry elsewhere, got\n%s", out)
	}
	bad := writeFile(t, dir, "bad.json", `{"small": {"memory": "lots"}}`)
	if code, _, errOut := runCmd(t, oomEvent, "recommend", "--quotas", bad); code == 0 || !strings.Contains(errOut, "small: memory: invalid quantity") {
		t.Errorf("bad quota: exit %d, %q; want the namespace and field named", code, errOut)
	}
}

func TestRecommendChooserFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--target", "1.5"}, "--target 1.5"},
		{[]string{"--weights", "1,2,3"}, "--weights: want one weight per objective (P(failure), expected cost), got 3"},
		{[]string{"--runtime-objective", "--weights", "1,2"}, "expected cost, runtime), got 2"},
	} {
		code, _, errOut := runCmd(t, oomEvent, append([]string{"recommend"}, append(c.args, "-")...)...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("recommend %v: exit %d, %q; want an error with %q", c.args, code, errOut, c.want)
		}
	}
	// A lower target picks a smaller, cheaper limit, when memory is most of the run's
	// cost (otherwise the likelier retry is also the cheaper in expectation).
	const memoryBound = `{"id":"m2","job":{"name":"etl-8","template":"etl","kind":"batch","resources":{"cpu":"1","memory":"64Gi"}},` +
		`"failure":{"reason":"OOMKilled","exitCode":137,"durationSeconds":600}}`
	_, strict, _ := runCmd(t, memoryBound, "recommend", "-")
	_, lax, _ := runCmd(t, memoryBound, "recommend", "--target", "0.6", "-")
	var a, b failure.Recommendation
	if json.Unmarshal([]byte(strict), &a) != nil || json.Unmarshal([]byte(lax), &b) != nil {
		t.Fatalf("output:\n%s\n%s", strict, lax)
	}
	oa, _ := a.ChosenOption()
	ob, _ := b.ChosenOption()
	if ob.Resources.MemoryBytes >= oa.Resources.MemoryBytes || ob.PFix < 0.6 {
		t.Errorf("--target 0.6 chose %s (PFix %.2f), the default %s: want less memory", failure.FormatBytes(ob.Resources.MemoryBytes), ob.PFix,
			failure.FormatBytes(oa.Resources.MemoryBytes))
	}
	if _, out, _ := runCmd(t, oomEvent, "recommend", "--runtime-objective", "--weights", "1,1,1", "-"); !strings.Contains(out, `"retry":true`) {
		t.Errorf("with three weights: %s", out)
	}
}

// moveFirstWeight returns the model artifact data with delta added to its first weight.
func moveFirstWeight(t *testing.T, data []byte, delta float32) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var packed string
	if err := json.Unmarshal(m["weights"], &packed); err != nil {
		t.Fatal(err)
	}
	w, err := base64.StdEncoding.DecodeString(packed)
	if err != nil || len(w) < 4 {
		t.Fatalf("weights: %v", err)
	}
	binary.LittleEndian.PutUint32(w, math.Float32bits(math.Float32frombits(binary.LittleEndian.Uint32(w))+delta))
	m["weights"], _ = json.Marshal(base64.StdEncoding.EncodeToString(w))
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

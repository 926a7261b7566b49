package main

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/autofix/autofix/classifier"
)

// modelOptions reads the training options an artifact records.
func modelOptions(t *testing.T, path string) classifier.TrainOptions {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	m, err := classifier.ReadModel(f, path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Info().Options == nil {
		t.Fatalf("%s records no options", path)
	}
	return *m.Info().Options
}

// TestTrainClassifierCheckRemedyRetrains: when --check finds an artifact stale it
// prints the command that retrains it. Run as printed, that command must retrain the
// same kind of model: with the options the artifact was trained with
// (--rule-features, --folds, --ambiguous-weight, ...), not only its files. Otherwise following the advice
// on the embedded model (trained with --rule-features) silently gives one without
// rule features, which --check then accepts.
func TestTrainClassifierCheckRemedyRetrains(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Open("../../rules/testdata/dev.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<21)
	for sc.Scan() && len(lines) < 40 {
		if strings.TrimSpace(sc.Text()) != "" {
			lines = append(lines, sc.Text())
		}
	}
	_ = f.Close()
	labelled := writeFile(t, dir, "labelled.jsonl", strings.Join(lines[:30], "\n")+"\n")
	model := filepath.Join(dir, "model.json")
	if code, stdout, errOut := runCmd(t, "", "train-classifier", "--rule-features", "--folds", "2", "--max-iterations", "20",
		"--ambiguous-weight", "0.3", "--out", model, labelled); code != 0 {
		t.Fatalf("train-classifier: exit %d: %s %s", code, stdout, errOut)
	}
	before := modelOptions(t, model)
	// The labelled file grows: the artifact is stale.
	writeFile(t, dir, "labelled.jsonl", strings.Join(lines, "\n")+"\n")
	code, _, errOut := runCmd(t, "", "train-classifier", "--check", model)
	_, remedy, ok := strings.Cut(errOut, "retrain it with: autofix ")
	if code == 0 || !ok {
		t.Fatalf("--check of a stale artifact: exit %d, stderr %q; want the command that retrains it", code, errOut)
	}
	args := strings.Fields(remedy)
	if code, stdout, errOut := runCmd(t, "", args...); code != 0 {
		t.Fatalf("the remedy %q: exit %d: %s %s", args, code, stdout, errOut)
	}
	if after := modelOptions(t, model); !reflect.DeepEqual(after, before) {
		t.Errorf("the remedy --check printed (%q) retrained with options %+v, want the artifact's own %+v", strings.Join(args, " "), after, before)
	}
}

//go:build integration

package main

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/simcluster"
)

// TestIntegrationKubernetesPricesAttempts: on the real control plane, an OOMKilled
// Job is fixed and its retry completes; `ledger --outcomes` then shows both runs
// priced from the catalogue and the runtime the API reports for their pods, and no
// usage (nothing measured it).
func TestIntegrationKubernetesPricesAttempts(t *testing.T) {
	s := startStack(t)
	failed := s.createJob(t, "llm-finetune", jobOpts{kind: "training", memory: "6Gi",
		truth: map[string]string{truthMemory: "7Gi", simcluster.TruthRunSeconds: "3"}})
	r := s.remediation(t, failed, 90*time.Second, ledger.Succeeded)
	if len(r.Attempts) != 1 {
		t.Fatalf("remediation: %d attempts, want 1", len(r.Attempts))
	}
	retry := s.job(t, r.Attempts[0].JobName)

	// What each attempt cost, from what the API says of its pod: 4 cores requested,
	// the memory limit, from the pod's start to its container's end.
	cat := s.cfg.Catalogue
	want := map[int]float64{}
	for attempt, job := range map[int]*batchv1.Job{1: failed, 2: retry} {
		pods, err := s.c.Client.CoreV1().Pods("ml").List(context.Background(), metav1.ListOptions{
			LabelSelector: labels.Set{batchv1.ControllerUidLabel: string(job.UID)}.String()})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("pods of %s: %v, %d; want 1", job.Name, err, len(pods.Items))
		}
		p := pods.Items[0]
		term := p.Status.ContainerStatuses[0].State.Terminated
		if p.Status.StartTime == nil || term == nil {
			t.Fatalf("pod %s: start %v, termination %+v", p.Name, p.Status.StartTime, term)
		}
		seconds := term.FinishedAt.Sub(p.Status.StartTime.Time).Seconds()
		mem := p.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]
		hourly := 4*cat.CPUPerCoreHour + float64(mem.Value())/(1<<30)*cat.MemoryPerGiBHour
		want[attempt] = hourly * seconds / 3600
		if seconds < 3 {
			t.Fatalf("pod %s ran %gs, want at least the 3 s of its ground truth", p.Name, seconds)
		}
	}

	code, out, stderr := runCmd(t, "", "ledger", "--outcomes", "--data-dir", s.cfg.DataDir)
	if code != 0 {
		t.Fatalf("ledger --outcomes: exit %d: %s", code, stderr)
	}
	t.Logf("ledger --outcomes:\n%s", out)
	seen := map[int]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var o map[string]any
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if o["template"] != "llm-finetune" {
			continue
		}
		attempt := int(o["attempt"].(float64))
		seen[attempt] = true
		cost, _ := o["cost"].(float64)
		if w := want[attempt]; !(cost > 0) || math.Abs(cost-w) > 1e-9*w+1e-12 {
			t.Errorf("attempt %d: cost %v, want %v (catalogue price x runtime): %s", attempt, cost, w, line)
		}
		if _, ok := o["usage"]; ok {
			t.Errorf("attempt %d: usage present though nothing measured it: %s", attempt, line)
		}
		if note, ok := o["unpriced"]; ok {
			t.Errorf("attempt %d: unpriced %v, want every pod priced", attempt, note)
		}
	}
	if !seen[1] || !seen[2] {
		t.Errorf("outcomes of llm-finetune: attempts %v, want 1 (the OOM) and 2 (the fix):\n%s", seen, out)
	}
}

package notify

import (
	"maps"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// waiting is a remediation waiting for review since since, in namespace ns.
func waiting(id, ns string, since time.Time) ledger.Remediation {
	ev := &failure.Event{ID: id, Job: failure.Job{Namespace: ns, Name: "train-" + id, Template: "train",
		Labels: map[string]string{"example.com/team": "vision"}}}
	rec := &failure.Recommendation{EventID: id, Retry: true, Chosen: 0,
		Classification: failure.Classification{Category: failure.OOMMemory, Action: failure.IncreaseMemory, Confidence: 0.99, Evidence: []string{
			"the learned model says oom_memory (0.97)", "torch.cuda.OutOfMemoryError: CUDA out of memory", "second line"}},
		Options: []failure.Option{{Changes: []string{"memory 16Gi -> 27Gi"}, PSuccess: 0.93, CostMultiple: 1.7}}}
	return ledger.Remediation{EventID: id, Namespace: ns, JobName: ev.Job.Name, Template: "train", State: ledger.PendingReview,
		Category: failure.OOMMemory, ReceivedAt: since, UpdatedAt: since, Event: ev, Recommendation: rec}
}

func testOptions() Options {
	return Options{URLs: []string{"http://alertmanager:9093"}, ExternalURL: "https://autofix.example:8443/",
		TeamLabel: "example.com/team", Labels: map[string]string{"cluster": "prod-eu"},
		ResendInterval: time.Minute, EscalateAfter: 30 * time.Minute}
}

func TestFiringAlert(t *testing.T) {
	o := testOptions()
	r := waiting("ev-1", "ml", t0)
	a := o.firing(&r, t0.Add(5*time.Minute))
	wantLabels := map[string]string{"alertname": AlertName, "severity": Warning, "remediation": "ev-1", "namespace": "ml",
		"job_name": "train-ev-1", "template": "train", "category": "oom_memory", "team": "vision", "cluster": "prod-eu"}
	if !maps.Equal(a.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", a.Labels, wantLabels)
	}
	wantAnn := map[string]string{
		"summary":  "A fix for job ml/train-ev-1 (oom_memory) awaits review",
		"evidence": "torch.cuda.OutOfMemoryError: CUDA out of memory",
		"description": "autofix proposes a retry: memory 16Gi -> 27Gi (P(success) 0.93, 1.7x the failed run's cost). " +
			"Waiting for review since 2026-03-01T12:00:00Z. Open the review link to approve or reject it.",
		"review_url": "https://autofix.example:8443/ui/remediations/ev-1",
	}
	if !maps.Equal(a.Annotations, wantAnn) {
		t.Errorf("annotations = %v, want %v", a.Annotations, wantAnn)
	}
	if !a.StartsAt.Equal(t0) || !a.EndsAt.Equal(t0.Add(8*time.Minute)) || a.GeneratorURL != wantAnn["review_url"] {
		t.Errorf("startsAt %v, endsAt %v, generatorURL %q; want %v, 3 intervals after now, the review link",
			a.StartsAt, a.EndsAt, a.GeneratorURL, t0)
	}
}

func TestSeverityEscalates(t *testing.T) {
	o := testOptions()
	r := waiting("ev-1", "ml", t0)
	tests := []struct {
		name      string
		after     time.Duration // EscalateAfter
		at        time.Duration // since the review began
		want      string
		wantStart time.Time
	}{
		{"just begun", 30 * time.Minute, 0, Warning, t0},
		{"a moment before", 30 * time.Minute, 30*time.Minute - time.Nanosecond, Warning, t0},
		{"at escalateAfter", 30 * time.Minute, 30 * time.Minute, Critical, t0.Add(30 * time.Minute)},
		{"long after", 30 * time.Minute, 5 * time.Hour, Critical, t0.Add(30 * time.Minute)},
		{"never escalated", 0, 500 * time.Hour, Warning, t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o.EscalateAfter = tt.after
			a := o.firing(&r, t0.Add(tt.at))
			if a.Labels["severity"] != tt.want || !a.StartsAt.Equal(tt.wantStart) {
				t.Errorf("severity %q from %v, want %q from %v", a.Labels["severity"], a.StartsAt, tt.want, tt.wantStart)
			}
			if critical := strings.Contains(a.Annotations["summary"], "for over 30m0s"); critical != (tt.want == Critical) {
				t.Errorf("summary %q: says how long it waited %v, want %v", a.Annotations["summary"], critical, tt.want == Critical)
			}
		})
	}
}

// TestUntrustedValues: what a failure event's publisher wrote reaches the alert
// clean and bounded: no line breaks or bidirectional overrides in a label, no
// invalid UTF-8, no label past its bound, and one evidence line, clipped.
func TestUntrustedValues(t *testing.T) {
	o := testOptions()
	r := waiting("ev/../1?x#y", "ml", t0)
	r.Event.Job.Labels["example.com/team"] = " vis\u202eion\n\x1b[31mred\xff " + strings.Repeat("é", 300)
	r.Template = "t\r\nemplate"
	r.Recommendation.Classification.Evidence = []string{"line\x00one " + strings.Repeat("x", 1000), "line two"}
	a := o.firing(&r, t0)
	team := a.Labels["team"]
	if !strings.HasPrefix(team, "vision [31mred\uFFFD éé") || len(team) > maxLabelValue || !utf8.ValidString(team) {
		t.Errorf("team = %q (%d bytes), want it cleaned, valid and at most %d bytes", team, len(team), maxLabelValue)
	}
	if a.Labels["template"] != "t emplate" {
		t.Errorf("template = %q, want %q", a.Labels["template"], "t emplate")
	}
	if ev := a.Annotations["evidence"]; !strings.HasPrefix(ev, "line one xxx") || !strings.HasSuffix(ev, "…") || len(ev) > maxEvidence ||
		strings.Contains(ev, "line two") {
		t.Errorf("evidence = %q (%d bytes), want the first line only, clipped to %d bytes", ev, len(ev), maxEvidence)
	}
	if got, want := a.Annotations["review_url"], "https://autofix.example:8443/ui/remediations/ev%2F..%2F1%3Fx%23y"; got != want {
		t.Errorf("review_url = %q, want %q: the id one path segment", got, want)
	}
	if a.Labels["remediation"] != "ev/../1?x#y" {
		t.Errorf("remediation = %q, want the id as it is", a.Labels["remediation"])
	}
}

// TestWithoutEventOrTeam: a remediation whose stored event did not decode, and a
// Job without the team label, still make an alert, without those labels.
func TestWithoutEventOrTeam(t *testing.T) {
	o := testOptions()
	r := waiting("ev-1", "ml", t0)
	r.Event, r.Recommendation, r.Unreadable = nil, nil, "the stored event: bad"
	a := o.firing(&r, t0)
	if _, ok := a.Labels["team"]; ok {
		t.Errorf("labels = %v, want no team", a.Labels)
	}
	if _, ok := a.Annotations["evidence"]; ok || !strings.HasPrefix(a.Annotations["description"], "autofix proposes a fix.") {
		t.Errorf("annotations = %v, want no evidence and a description without a proposal", a.Annotations)
	}
	r = waiting("ev-2", "", t0)
	delete(r.Event.Job.Labels, "example.com/team")
	a = o.firing(&r, t0)
	if _, ok := a.Labels["team"]; ok || a.Labels["namespace"] != "" || a.Annotations["summary"] != "A fix for job train-ev-2 (oom_memory) awaits review" {
		t.Errorf("labels %v, summary %q: want neither team nor namespace", a.Labels, a.Annotations["summary"])
	}
}

func TestCheckLabel(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"cluster", "prod-eu", ""},
		{"_x9", "v", ""},
		{"9x", "v", "not a label name"},
		{"a-b", "v", "not a label name"},
		{"", "v", "not a label name"},
		{"__name__", "v", "reserved"},
		{"severity", "v", "autofix's own label"},
		{"team", "v", "autofix's own label"},
		{"cluster", "", "an empty value"},
		{"cluster", "a\nb", "control characters"},
		{"cluster", strings.Repeat("x", 254), "over 253 bytes"},
	}
	for _, tt := range tests {
		err := CheckLabel(tt.name, tt.value)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckLabel(%q, %q) = %v, want %q", tt.name, tt.value, err, tt.want)
		}
	}
}

package remediate

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
)

// Review (issue 15): every pod template of a RayJob's attempt is held to the pod
// policy, the submitter's and the autoscaler sidecar's included: KubeRay creates
// those pods/containers from the RayJob autofix creates.
func TestReviewRayJobNewAttemptHoldsEveryPodTemplateToThePolicy(t *testing.T) {
	a, err := NewRayJobs(fake.NewClientset(), rayDynamic(), AdapterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	privileged := map[string]any{"privileged": true}
	for _, tc := range []struct {
		name string
		path []string
		val  any
	}{
		{"a privileged submitter", []string{"spec", "submitterPodTemplate", "spec", "containers"},
			[]any{map[string]any{"name": "submit", "image": "rayproject/ray:2.40", "securityContext": privileged}}},
		{"a submitter on the host's network", []string{"spec", "submitterPodTemplate", "spec", "hostNetwork"}, true},
		{"a hostPath volume on the submitter", []string{"spec", "submitterPodTemplate", "spec", "volumes"},
			[]any{map[string]any{"name": "root", "hostPath": map[string]any{"path": "/"}}}},
		{"a privileged autoscaler", []string{"spec", "rayClusterSpec", "autoscalerOptions", "securityContext"}, privileged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failed := failedRayJob()
			if err := unstructured.SetNestedField(failed.Object, tc.val, tc.path...); err != nil {
				t.Fatal(err)
			}
			got, err := a.NewAttempt(failed, RayHeadGroup, raySubmission())
			if err == nil {
				v, _, _ := unstructured.NestedFieldNoCopy(got.Object, tc.path...)
				t.Fatalf("NewAttempt = nil error, %s = %v copied; want the pod policy's refusal naming %s",
					strings.Join(tc.path, "."), v, strings.Join(tc.path[:2], "."))
			}
		})
	}
}

func TestReviewRayJobNewAttemptKeepsAnOrdinaryAutoscaler(t *testing.T) {
	a, err := NewRayJobs(fake.NewClientset(), rayDynamic(), AdapterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	failed := failedRayJob()
	opts := map[string]any{"idleTimeoutSeconds": int64(60), "upscalingMode": "Default", "image": "rayproject/ray:2.40",
		"resources": map[string]any{"limits": map[string]any{"cpu": "500m"}}, "env": []any{map[string]any{"name": "A", "value": "b"}}}
	if err := unstructured.SetNestedField(failed.Object, opts, "spec", "rayClusterSpec", "autoscalerOptions"); err != nil {
		t.Fatal(err)
	}
	got, err := a.NewAttempt(failed, RayHeadGroup, raySubmission())
	if err != nil {
		t.Fatalf("NewAttempt: %v, want an ordinary autoscaler and submitter accepted", err)
	}
	if v, _, _ := unstructured.NestedString(got.Object, "spec", "rayClusterSpec", "autoscalerOptions", "upscalingMode"); v != "Default" {
		t.Errorf("autoscalerOptions.upscalingMode = %q, want it kept", v)
	}
}

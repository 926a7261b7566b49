package pipeline

import (
	"strings"
	"testing"

	"github.com/autofix/autofix/policy"
)

// TestRayJobStageHoldsTheAutoscalerToThePodPolicy: KubeRay puts the autoscaler
// sidecar of rayClusterSpec.autoscalerOptions in the head's pod, with its security
// context; a stage whose autoscaler is privileged is refused as the RayJob adapter
// refuses such a fix.
func TestRayJobStageHoldsTheAutoscalerToThePodPolicy(t *testing.T) {
	def := mustParse(t, strings.Replace(trainAsRayJob, "      rayClusterSpec:\n",
		"      rayClusterSpec:\n        enableInTreeAutoscaling: true\n        autoscalerOptions: {securityContext: {privileged: true}}\n", 1))
	if _, found := def.Stages[0].RayJob["rayClusterSpec"].(map[string]any)["autoscalerOptions"]; !found {
		t.Fatal("the test's definition has no autoscalerOptions")
	}
	err := def.Stages[0].checkPods(0, policy.Pods{})
	if err == nil || !strings.Contains(err.Error(), "autoscalerOptions") {
		t.Errorf("checkPods = %v, want the privileged autoscaler refused", err)
	}
}

package pipeline

import (
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/failure"
)

// NotOwnedError is an object the driver would update, scale, delete or follow that
// autofix did not create for the pipeline (or, for a Job, for the run). The driver
// leaves it alone and fails the stage with this message.
type NotOwnedError struct {
	// Kind is "deployment" or "job".
	Kind      string
	Namespace string
	Name      string
	// Owner is the pipeline ("vision"), or the run ("vision/run1") for a Job.
	Owner string
	// Why is what the object lacks.
	Why string
}

// Error names the object, whose it should be, what it lacks and what to do.
func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("%s %s/%s exists but is not autofix's for %s (%s); autofix does not touch it: "+
		"rename the pipeline, or move the %s out of the way (see docs/kubernetes.md, \"What the driver owns\")",
		e.Kind, e.Namespace, e.Name, e.Owner, e.Why, e.Kind)
}

func runID(def *Definition, run string) string { return def.Name + "/" + run }

// ownedLabels are the labels the driver puts on every object it creates.
func ownedLabels(def *Definition, stage string) map[string]string {
	return map[string]string{failure.LabelManaged: "true", failure.LabelPipeline: def.Name, failure.LabelStage: stage}
}

// deploymentOwner checks that a Deployment is autofix's for the pipeline: created (or
// taken over) by a run of the same pipeline. A Deployment an earlier run created is
// this run's to update; one a person created is nobody's but theirs.
func deploymentOwner(m *metav1.ObjectMeta, def *Definition) error {
	why := ""
	switch ann := m.Annotations[failure.AnnotationPipelineRun]; {
	case m.Labels[failure.LabelManaged] != "true":
		why = "no label " + failure.LabelManaged + "=true"
	case m.Labels[failure.LabelPipeline] != def.Name:
		why = fmt.Sprintf("label %s is %s", failure.LabelPipeline, quote(m.Labels[failure.LabelPipeline]))
	case !strings.HasPrefix(ann, def.Name+"/"):
		why = fmt.Sprintf("annotation %s is %s, not a run of %s", failure.AnnotationPipelineRun, quote(ann), def.Name)
	default:
		return nil
	}
	return &NotOwnedError{Kind: "deployment", Namespace: m.Namespace, Name: m.Name, Owner: "pipeline " + def.Name, Why: why}
}

// stageOwner checks that a workload (kind "job" or "jobset", of meta) labelled as
// stage's of run is autofix's: the stage's workload the driver created for the run,
// or an attempt remediation created from it (which carries the managed label, the
// remediation's id and the stage's workload as its original).
func stageOwner(j metav1.Object, kind string, def *Definition, run string, s *Stage) error {
	why := ""
	switch ann := j.GetAnnotations()[failure.AnnotationPipelineRun]; {
	case j.GetLabels()[failure.LabelManaged] != "true":
		why = "no label " + failure.LabelManaged + "=true"
	case j.GetLabels()[failure.LabelPipeline] != def.Name || j.GetLabels()[LabelRun] != run || j.GetLabels()[failure.LabelStage] != s.Name:
		why = fmt.Sprintf("labels %s, %s, %s are %s, %s, %s", failure.LabelPipeline, LabelRun, failure.LabelStage,
			quote(j.GetLabels()[failure.LabelPipeline]), quote(j.GetLabels()[LabelRun]), quote(j.GetLabels()[failure.LabelStage]))
	case ann == runID(def, run):
	case ann == "" && j.GetAnnotations()[failure.AnnotationRemediation] != "" && j.GetLabels()[failure.LabelOriginal] == jobName(def, run, s):
		// an attempt remediation made of the stage's Job
	default:
		why = fmt.Sprintf("annotation %s is %s, and it is no remediation attempt of %s",
			failure.AnnotationPipelineRun, quote(ann), jobName(def, run, s))
	}
	if why == "" {
		return nil
	}
	return &NotOwnedError{Kind: kind, Namespace: j.GetNamespace(), Name: j.GetName(), Owner: "pipeline run " + runID(def, run), Why: why}
}

func jobName(def *Definition, run string, s *Stage) string {
	return def.Name + "-" + run + "-" + s.Name
}

// quote quotes a value read from an object for a message, cut to 64 bytes.
func quote(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}

package pipeline

import (
	"fmt"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/remediate"
)

// AnnotationPipelineRun names, on every object the driver creates, the pipeline run
// that created it or, for a Deployment, last changed it: "<pipeline>/<run>". With
// the label autofix.io/managed=true it is what makes an object autofix's: the driver
// updates, scales or deletes nothing that lacks them.
const AnnotationPipelineRun = "autofix.io/pipeline-run"

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
	return map[string]string{remediate.LabelManaged: "true", remediate.LabelPipeline: def.Name, remediate.LabelStage: stage}
}

// deploymentOwner checks that a Deployment is autofix's for the pipeline: created (or
// taken over) by a run of the same pipeline. A Deployment an earlier run created is
// this run's to update; one a person created is nobody's but theirs.
func deploymentOwner(m *metav1.ObjectMeta, def *Definition) error {
	why := ""
	switch ann := m.Annotations[AnnotationPipelineRun]; {
	case m.Labels[remediate.LabelManaged] != "true":
		why = "no label " + remediate.LabelManaged + "=true"
	case m.Labels[remediate.LabelPipeline] != def.Name:
		why = fmt.Sprintf("label %s is %s", remediate.LabelPipeline, quote(m.Labels[remediate.LabelPipeline]))
	case !strings.HasPrefix(ann, def.Name+"/"):
		why = fmt.Sprintf("annotation %s is %s, not a run of %s", AnnotationPipelineRun, quote(ann), def.Name)
	default:
		return nil
	}
	return &NotOwnedError{Kind: "deployment", Namespace: m.Namespace, Name: m.Name, Owner: "pipeline " + def.Name, Why: why}
}

// jobOwner checks that a Job labelled as stage's of run is autofix's: the stage Job
// the driver created for the run, or an attempt remediation created from it (which
// carries the managed label, the remediation's id and the stage Job as its original).
func jobOwner(j *batchv1.Job, def *Definition, run string, s *Stage) error {
	why := ""
	switch ann := j.Annotations[AnnotationPipelineRun]; {
	case j.Labels[remediate.LabelManaged] != "true":
		why = "no label " + remediate.LabelManaged + "=true"
	case j.Labels[remediate.LabelPipeline] != def.Name || j.Labels[LabelRun] != run || j.Labels[remediate.LabelStage] != s.Name:
		why = fmt.Sprintf("labels %s, %s, %s are %s, %s, %s", remediate.LabelPipeline, LabelRun, remediate.LabelStage,
			quote(j.Labels[remediate.LabelPipeline]), quote(j.Labels[LabelRun]), quote(j.Labels[remediate.LabelStage]))
	case ann == runID(def, run):
	case ann == "" && j.Annotations[remediate.AnnotationRemediation] != "" && j.Labels[remediate.LabelOriginal] == jobName(def, run, s):
		// an attempt remediation made of the stage's Job
	default:
		why = fmt.Sprintf("annotation %s is %s, and it is no remediation attempt of %s",
			AnnotationPipelineRun, quote(ann), jobName(def, run, s))
	}
	if why == "" {
		return nil
	}
	return &NotOwnedError{Kind: "job", Namespace: j.Namespace, Name: j.Name, Owner: "pipeline run " + runID(def, run), Why: why}
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

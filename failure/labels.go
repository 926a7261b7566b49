package failure

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Labels and annotations autofix reads on the Jobs it watches and writes on the Jobs
// it creates. Label values must be valid Kubernetes label values, so what may not be
// (the chain id, which holds a slash; the remediation id) travels in annotations.
const (
	// LabelManaged marks a Job autofix created.
	LabelManaged = "autofix.io/managed"
	// LabelOriginal names the first Job of the chain.
	LabelOriginal = "autofix.io/original-job"
	// LabelAttempt is the attempt number (the original run is 1).
	LabelAttempt = "autofix.io/attempt"
	// LabelTemplate names the recurring job (defaults to the original Job's name).
	LabelTemplate = "autofix.io/template"
	// LabelKind is the job kind: training, compression, deployment or batch.
	LabelKind = "autofix.io/kind"
	// LabelPipeline and LabelStage place a Job in a pipeline.
	LabelPipeline = "autofix.io/pipeline"
	LabelStage    = "autofix.io/stage"

	// AnnotationChain is the chain id, "namespace/original-job" (ChainID). Events
	// may carry it among their labels: PartitionKey reads it there.
	AnnotationChain = "autofix.io/chain"
	// AnnotationRemediation is the id of the remediation (failure event) that asked
	// for this attempt.
	AnnotationRemediation = "autofix.io/remediation"
	// AnnotationTunables declares, as JSON, the parameters remediation may change:
	// {"micro_batch_size": {"role": "micro_batch", "min": 1, "max": 512}}.
	AnnotationTunables = "autofix.io/tunables"
	// AnnotationParams says, as JSON, how each parameter reaches the container:
	// {"micro_batch_size": {"env": "MICRO_BATCH_SIZE"}, "precision": {"arg": "--precision"}}.
	AnnotationParams = "autofix.io/params"
	// AnnotationContainer names the container whose resources autofix sizes
	// (default: the first).
	AnnotationContainer = "autofix.io/container"
	// AnnotationAttemptToken is the attempt's token, from the ledger: a Job that
	// carries autofix's labels and the remediation's annotation, which anyone can
	// copy, is autofix's attempt only with it.
	AnnotationAttemptToken = "autofix.io/attempt-token" // #nosec G101 -- an annotation's name, not a credential
	// AnnotationChanges lists, for people, what the attempt changed.
	AnnotationChanges = "autofix.io/changes"
	// AnnotationPipelineRun names, on every object the pipeline driver creates, the
	// pipeline run ("pipeline/run") that created it or, for a Deployment, last
	// changed it; an attempt keeps it, so that the driver follows its stage's fix.
	// With LabelManaged it is what makes an object autofix's: the driver updates,
	// scales or deletes nothing that lacks them.
	AnnotationPipelineRun = "autofix.io/pipeline-run"
)

// TemplateKey is the key of a template's history: "namespace/template".
func TemplateKey(namespace, template string) string { return namespace + "/" + template }

// HistoryKey is the key of the history of ev's job: its namespace and template (the
// job's name when it has none).
func (ev *Event) HistoryKey() string {
	return TemplateKey(ev.Job.Namespace, cmp.Or(ev.Job.Template, ev.Job.Name))
}

// ChainID is the id of the chain of attempts that began with the Job original in
// namespace: "namespace/original".
func ChainID(namespace, original string) string { return namespace + "/" + original }

// ChainOriginal is the first Job of chain ("namespace/original") in namespace, or
// fallback when chain is not of that form.
func ChainOriginal(chain, namespace, fallback string) string {
	if o, ok := strings.CutPrefix(chain, namespace+"/"); ok && o != "" {
		return o
	}
	return fallback
}

// PartitionKey is the Kafka key of ev: its chain as its labels name it, so that the
// events of one chain are in order on one partition. (Only a key: the chain an event
// joins is decided by the ledger, never by labels.)
func PartitionKey(ev *Event) string {
	return cmp.Or(ev.Job.Labels[AnnotationChain], ChainID(ev.Job.Namespace, cmp.Or(ev.Job.Labels[LabelOriginal], ev.Job.Name)))
}

// AttemptName is the deterministic name of attempt n of the chain that began with job
// original: "<original>-af<n>", shortened with a hash to fit Kubernetes' 63 characters.
func AttemptName(original string, n int) string {
	suffix := fmt.Sprintf("-af%d", n)
	if len(original)+len(suffix) <= 63 {
		return original + suffix
	}
	sum := sha256.Sum256([]byte(original))
	h := hex.EncodeToString(sum[:4])
	return original[:63-len(suffix)-len(h)-1] + "-" + h + suffix
}

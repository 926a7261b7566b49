package remediate

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

	// AnnotationChain is the chain id, "namespace/original-job".
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
	// AnnotationPipelineRun names the pipeline run ("pipeline/run") whose stage a Job
	// is; an attempt keeps it, so that the pipeline driver follows its stage's fix.
	AnnotationPipelineRun = "autofix.io/pipeline-run"

	// ResourceGPU is the extended resource of NVIDIA's device plugin.
	ResourceGPU = "nvidia.com/gpu"
)

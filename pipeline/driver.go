package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	jobsetclient "sigs.k8s.io/jobset/client-go/clientset/versioned"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/policy"
)

// Labels and annotations of pipeline objects.
const (
	LabelRun = "autofix.io/run"
	// LabelMaxAttempts is a stage's retry policy; the policy reads it from the
	// failure event's labels.
	LabelMaxAttempts = policy.LabelMaxAttempts
	// AnnotationRollback records, on the stable Deployment, a rollout that was undone.
	AnnotationRollback = "autofix.io/rollback"
)

// Chains tells how the failure of a stage's workload is being remediated.
type Chains interface {
	// FailureState is the ledger state of the remediation of the failed workload
	// (a *batchv1.Job or a *jobsetapi.JobSet; "" while there is none yet), and its
	// reason.
	FailureState(ctx context.Context, workload metav1.Object) (state, reason string, err error)
}

// Phase of a stage or a run.
type Phase string

// Phases.
const (
	Pending   Phase = "pending"
	Running   Phase = "running"
	Succeeded Phase = "succeeded"
	Failed    Phase = "failed"
)

// Status is where a run stands, reconstructed from the cluster.
type Status struct {
	Pipeline string        `json:"pipeline"`
	Run      string        `json:"run"`
	Phase    Phase         `json:"phase"`
	Stages   []StageStatus `json:"stages"`
}

// StageStatus is one stage of a run.
type StageStatus struct {
	Name     string `json:"name"`
	Phase    Phase  `json:"phase"`
	Attempts int    `json:"attempts,omitempty"`
	Object   string `json:"object,omitempty"`
	Artifact string `json:"artifact,omitempty"`
	Message  string `json:"message,omitempty"`
}

// Driver runs pipelines.
type Driver struct {
	Client kubernetes.Interface
	// JobSets runs JobSet stages; nil (kubernetes.kinds does not name JobSet) fails
	// a run with one before anything is created.
	JobSets jobsetclient.Interface
	// RayJobs runs RayJob stages (KubeRay's RayJobs, RayJobGVR); nil (kubernetes.kinds
	// does not name RayJob) fails a run with one before anything is created.
	RayJobs dynamic.NamespaceableResourceInterface
	// Workflows runs Workflow stages (Argo's Workflows, WorkflowGVR); nil
	// (kubernetes.kinds does not name Workflow) fails a run with one before
	// anything is created.
	Workflows dynamic.NamespaceableResourceInterface
	Chains    Chains
	// Poll is how often it looks again while a stage runs (default 500 ms).
	Poll time.Duration
	// Observe makes Step report only: it creates, updates and deletes nothing.
	Observe bool
	// Pods are the pod-safety switches (the policy's): a stage whose pod template
	// they refuse fails before anything is created. The zero value refuses every
	// class.
	Pods policy.Pods
	Log  *slog.Logger
}

// Run drives run of def to its end and returns its final status. It can be
// stopped and started again at any point: each step first looks for what it would
// create.
func (d *Driver) Run(ctx context.Context, def *Definition, run string) (Status, error) {
	errs := 0
	for {
		st, err := d.Step(ctx, def, run)
		switch {
		case err != nil && errs < 5 && ctx.Err() == nil: // a conflict, the API server restarting
			errs++
			d.log().Warn("pipeline step failed; retrying", "pipeline", def.Name, "run", run, "err", err)
		case err != nil:
			return st, err
		case st.Phase == Succeeded || st.Phase == Failed:
			return st, nil
		default:
			errs = 0
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(d.poll()):
		}
	}
}

// Step looks at the run once, starts what is due, and reports the status. Unless it
// only observes, it first checks every stage's pod template against the pod policy:
// a refused one fails the run before anything is created or changed.
func (d *Driver) Step(ctx context.Context, def *Definition, run string) (Status, error) {
	st := Status{Pipeline: def.Name, Run: run, Phase: Running}
	if !d.Observe {
		for i := range def.Stages {
			why := ""
			if err := def.Stages[i].checkPods(i, d.Pods); err != nil {
				d.log().Warn("pipeline: the pod policy refuses a stage", "pipeline", def.Name, "run", run, "err", err)
				why = "the pod policy refuses the stage's template: " + err.Error()
			} else {
				why = d.runnable(def, run, i)
			}
			if why == "" {
				continue
			}
			st.Phase = Failed
			for j := range def.Stages {
				ss := StageStatus{Name: def.Stages[j].Name, Phase: Pending}
				if j == i {
					ss.Phase, ss.Message = Failed, why
				}
				st.Stages = append(st.Stages, ss)
			}
			return st, nil
		}
	}
	input := ""
	for i := range def.Stages {
		s := &def.Stages[i]
		var ss StageStatus
		var err error
		switch {
		case s.Deploy != nil:
			ss, err = d.deploy(ctx, def, run, s, input)
		case s.JobSet != nil:
			ss, err = d.jobSet(ctx, def, run, s, input)
		case s.RayJob != nil:
			ss, err = d.rayJobStage(ctx, def, run, s, input)
		case s.Workflow != nil:
			ss, err = d.workflowStage(ctx, def, run, s, input)
		default:
			ss, err = d.job(ctx, def, run, s, input)
		}
		if err != nil {
			return st, fmt.Errorf("stage %s: %w", s.Name, err)
		}
		st.Stages = append(st.Stages, ss)
		switch ss.Phase {
		case Failed:
			st.Phase = Failed
			return d.rest(st, def, i), nil
		case Succeeded:
			input = ss.Artifact
			continue
		}
		return d.rest(st, def, i), nil // running: later stages wait for its output
	}
	st.Phase = Succeeded
	return st, nil
}

// runnable says why stage i of def cannot run as run ("" when it can): its kind
// is not enabled, or its workloads' names would be refused.
func (d *Driver) runnable(def *Definition, run string, i int) string {
	s := &def.Stages[i]
	switch {
	case s.JobSet != nil && d.JobSets == nil:
		return fmt.Sprintf("stages[%d].jobset: JobSet stages run only when kubernetes.kinds names JobSet", i)
	case s.RayJob != nil && d.RayJobs == nil:
		return fmt.Sprintf("stages[%d].rayjob: RayJob stages run only when kubernetes.kinds names RayJob", i)
	case s.RayJob != nil:
		if err := rayJobName(def, run, s); err != nil {
			return fmt.Sprintf("stages[%d].rayjob: %v", i, err)
		}
	case s.Workflow != nil && d.Workflows == nil:
		return fmt.Sprintf("stages[%d].workflow: Workflow stages run only when kubernetes.kinds names Workflow", i)
	case s.Workflow != nil:
		if err := workflowName(def, run, s); err != nil {
			return fmt.Sprintf("stages[%d].workflow: %v", i, err)
		}
	}
	return ""
}

// rest lists the stages after i as pending.
func (d *Driver) rest(st Status, def *Definition, i int) Status {
	for _, s := range def.Stages[i+1:] {
		st.Stages = append(st.Stages, StageStatus{Name: s.Name, Phase: Pending})
	}
	return st
}

func (d *Driver) selector(def *Definition, run, stage string) string {
	return labels.SelectorFromSet(labels.Set{failure.LabelPipeline: def.Name, LabelRun: run, failure.LabelStage: stage}).String()
}

func artifact(def *Definition, run, stage string) string {
	return def.Artifacts + "/" + run + "/" + stage
}

// job runs a Job stage (runStage): its Jobs fail with their first failed pod.
func (d *Driver) job(ctx context.Context, def *Definition, run string, s *Stage, input string) (StageStatus, error) {
	jc := d.Client.BatchV1().Jobs(def.Namespace)
	return runStage(ctx, d, def, run, s, workloads[*batchv1.Job]{
		kind: "job",
		list: func(ctx context.Context, selector string) ([]*batchv1.Job, error) {
			l, err := jc.List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return nil, err
			}
			return pointers(l.Items), nil
		},
		get: func(ctx context.Context, name string) (*batchv1.Job, error) {
			return jc.Get(ctx, name, metav1.GetOptions{})
		},
		create: func(ctx context.Context, j *batchv1.Job) error {
			_, err := jc.Create(ctx, j, metav1.CreateOptions{})
			return err
		},
		build:     func() (*batchv1.Job, error) { return d.newJob(def, run, s, input) },
		succeeded: func(j *batchv1.Job) bool { return done(j, batchv1.JobComplete) },
		failed:    func(j *batchv1.Job) bool { return done(j, batchv1.JobFailed) },
	})
}

// remediation reports a stage whose latest workload has not succeeded: what the
// ledger says remediation made of its failure (failed: the workload says it
// failed; else it may be stuck, its pods unable to start).
func (d *Driver) remediation(ctx context.Context, ss StageStatus, latest metav1.Object, failed bool) (StageStatus, error) {
	state, reason, err := d.Chains.FailureState(ctx, latest)
	if err != nil {
		return ss, err
	}
	switch {
	case state == "rejected" || state == "abandoned":
		ss.Phase, ss.Message = Failed, fmt.Sprintf("%s failed and is not retried: %s", latest.GetName(), reason)
	case state == "pending_review":
		ss.Message = latest.GetName() + " failed; its fix waits for review"
	case failed && state == "":
		ss.Message = latest.GetName() + " failed; waiting for autofix serve to record it (does it watch this namespace and use this ledger?)"
	case failed || state != "":
		ss.Message = latest.GetName() + " failed; remediating"
	}
	return ss, nil
}

func (d *Driver) newJob(def *Definition, run string, s *Stage, input string) (*batchv1.Job, error) {
	tmpl := s.Job.DeepCopy()
	if tmpl.Spec.RestartPolicy == "" {
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	}
	withArtifacts(&tmpl.Spec.Containers[0], def, run, s, input)
	l, ann, err := stageMeta(def, run, s)
	if err != nil {
		return nil, err
	}
	zero := int32(0) // the first failed pod fails the Job: remediation decides what runs next
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: jobName(def, run, s), Namespace: def.Namespace, Labels: l, Annotations: ann},
		Spec:       batchv1.JobSpec{BackoffLimit: &zero, Template: *tmpl},
	}, nil
}

// withArtifacts gives c the stage's input and output (ARTIFACT_IN, ARTIFACT_OUT).
func withArtifacts(c *corev1.Container, def *Definition, run string, s *Stage, input string) {
	c.Env = append(c.Env, corev1.EnvVar{Name: "ARTIFACT_IN", Value: input}, corev1.EnvVar{Name: "ARTIFACT_OUT", Value: artifact(def, run, s.Name)})
}

// stageMeta are the labels and annotations of the workload of stage s of run: the
// driver's, the job kind, template and retry policy remediation reads, and the
// stage's tunables and parameters.
func stageMeta(def *Definition, run string, s *Stage) (labels, annotations map[string]string, err error) {
	l := ownedLabels(def, s.Name)
	l[LabelRun], l[failure.LabelKind] = run, string(s.Kind)
	l[failure.LabelTemplate], l[LabelMaxAttempts] = def.Name+"-"+s.Name, strconv.Itoa(s.MaxAttempts)
	ann := map[string]string{failure.AnnotationPipelineRun: runID(def, run)}
	if len(s.Tunables) > 0 {
		b, err := json.Marshal(s.Tunables)
		if err != nil {
			return nil, nil, err
		}
		ann[failure.AnnotationTunables] = string(b)
	}
	if len(s.Params) > 0 {
		b, err := json.Marshal(s.Params)
		if err != nil {
			return nil, nil, err
		}
		ann[failure.AnnotationParams] = string(b)
	}
	return l, ann, nil
}

func done(j *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func attemptOf(j metav1.Object) int {
	if n, err := strconv.Atoi(j.GetLabels()[failure.LabelAttempt]); err == nil {
		return n
	}
	return 1
}

func (d *Driver) poll() time.Duration {
	if d.Poll > 0 {
		return d.Poll
	}
	return 500 * time.Millisecond
}

func (d *Driver) log() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.New(slog.DiscardHandler)
}

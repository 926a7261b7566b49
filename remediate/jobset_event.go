package remediate

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"

	"github.com/autofix/autofix/failure"
)

// jobSetEventPrefix starts the id of a JobSet's failure event.
const jobSetEventPrefix = "k8s-jobset-"

// LabelFailedPod is the key, in a JobSet failure event's job.labels, of the pod
// that failed first (the root cause of the JobSet's failure); the replicated job
// it belongs to is under jobset.sigs.k8s.io/replicatedjob-name.
const LabelFailedPod = "autofix.io/failed-pod"

// AnnotationReplicatedJob names, on a JobSet autofix created, the replicated job
// whose failure it answers: the one whose resources it sized, whose configuration
// its outcome records.
const AnnotationReplicatedJob = "autofix.io/replicated-job"

// JobSetEventID is the id of the failure event of one JobSet: a JobSet is one
// attempt, so its uid names the failure whoever publishes it, however often.
func JobSetEventID(js *jobsetapi.JobSet) string { return jobSetEventPrefix + string(js.UID) }

// jobSetCondition returns the JobSet's condition of type t if it is True.
func jobSetCondition(js *jobsetapi.JobSet, t jobsetapi.JobSetConditionType) *metav1.Condition {
	for i := range js.Status.Conditions {
		c := &js.Status.Conditions[i]
		if c.Type == string(t) && c.Status == metav1.ConditionTrue {
			return c
		}
	}
	return nil
}

// jobSetRun is what a JobSet ran: the child Jobs it controls (those still there)
// and their pods, by Job uid.
type jobSetRun struct {
	jobs []*batchv1.Job
	pods map[types.UID][]*corev1.Pod
}

// replicatedJob returns the replicated job of js named name, nil if none.
func replicatedJob(js *jobsetapi.JobSet, name string) *jobsetapi.ReplicatedJob {
	for i := range js.Spec.ReplicatedJobs {
		if js.Spec.ReplicatedJobs[i].Name == name {
			return &js.Spec.ReplicatedJobs[i]
		}
	}
	return nil
}

// firstFailedJobName is the child Job the JobSet controller names in its Failed
// condition's message ("... (first failed job: NAME)"); "" when it names none.
func firstFailedJobName(cond *metav1.Condition) string {
	const marker = "(first failed job: "
	i := strings.LastIndex(cond.Message, marker)
	if i < 0 {
		return ""
	}
	name, ok := strings.CutSuffix(cond.Message[i+len(marker):], ")")
	if !ok || strings.ContainsAny(name, " ()") {
		return ""
	}
	return name
}

// replicatedJobOfChild is the replicated job whose child Job is named name
// ("<jobset>-<replicated job>-<index>", as the JobSet controller names them); ""
// if no replicated job of js gives that name.
func replicatedJobOfChild(js *jobsetapi.JobSet, name string) string {
	for _, rj := range js.Spec.ReplicatedJobs {
		idx, ok := strings.CutPrefix(name, js.Name+"-"+rj.Name+"-")
		if ok && idx != "" && strings.Trim(idx, "0123456789") == "" {
			return rj.Name
		}
	}
	return ""
}

// rootCause is the failure a JobSet's Failed condition stems from: the child Job
// that failed first — the one the condition names, else the one whose Failed
// condition is earliest — its replicated job, and its pod that failed first (the
// peers the JobSet controller stops after it fail later, or are deleted). job and
// pod are nil when they are gone; rjob is "" when nothing says which replicated
// job failed.
type rootCause struct {
	rjob string
	job  *batchv1.Job
	pod  *corev1.Pod
}

func findRootCause(js *jobsetapi.JobSet, cond *metav1.Condition, run *jobSetRun) rootCause {
	var rc rootCause
	if name := firstFailedJobName(cond); name != "" {
		rc.rjob = replicatedJobOfChild(js, name)
		for _, j := range run.jobs {
			if j.Name == name {
				rc.job = j
			}
		}
	}
	if rc.job == nil && rc.rjob == "" {
		var first time.Time
		for _, j := range run.jobs {
			if c, failed := jobFailed(j); failed && (rc.job == nil || c.LastTransitionTime.Time.Before(first)) {
				rc.job, first = j, c.LastTransitionTime.Time
			}
		}
	}
	if rc.job != nil {
		if name := rc.job.Labels[jobsetapi.ReplicatedJobNameKey]; replicatedJob(js, name) != nil {
			rc.rjob = name
		} else if rc.rjob == "" {
			rc.rjob = replicatedJobOfChild(js, rc.job.Name)
		}
		rc.pod = firstFailed(run.pods[rc.job.UID])
	}
	if rc.rjob == "" && len(js.Spec.ReplicatedJobs) == 1 {
		rc.rjob = js.Spec.ReplicatedJobs[0].Name
	}
	return rc
}

// firstFailed is the pod that failed first.
func firstFailed(pods []*corev1.Pod) *corev1.Pod {
	var first *corev1.Pod
	for _, p := range pods {
		if p.Status.Phase == corev1.PodFailed && (first == nil || finished(p).Before(finished(first))) {
			first = p
		}
	}
	return first
}

// jobSetAnnotations are the annotations autofix reads for the replicated job rj of
// js: the JobSet's, with the container the replicated job's template names
// (autofix.io/container on it) in place of the JobSet's.
func jobSetAnnotations(js *jobsetapi.JobSet, rj *jobsetapi.ReplicatedJob) map[string]string {
	a := maps.Clone(js.Annotations)
	if c, ok := rj.Template.Annotations[failure.AnnotationContainer]; ok {
		if a == nil {
			a = map[string]string{}
		}
		a[failure.AnnotationContainer] = c
	}
	return a
}

// describeJobSet describes a JobSet as an event's job: the configuration is the
// main container of its replicated job rjob (the one that failed, or that a fix
// sized), whose name goes in the labels under jobset.sigs.k8s.io/replicatedjob-name.
// The kind is the label autofix.io/kind, training by default (what JobSets run).
func describeJobSet(js *jobsetapi.JobSet, rjob, gpuLabel string) failure.Job {
	kind := failure.JobKind(js.Labels[failure.LabelKind])
	if !kind.Valid() || kind == failure.Deployment {
		kind = failure.Training
	}
	var (
		spec        corev1.PodSpec
		annotations = js.Annotations
	)
	if rj := replicatedJob(js, rjob); rj != nil {
		spec, annotations = rj.Template.Spec.Template.Spec, jobSetAnnotations(js, rj)
	}
	j := describeWorkload(&js.ObjectMeta, kind, &spec, annotations, gpuLabel)
	if rjob != "" {
		j.Labels[jobsetapi.ReplicatedJobNameKey] = rjob
	}
	return j
}

// jobSetEvent builds the FailureEvent of a failed JobSet from its Failed condition
// and its root cause: the pod that failed first, as a Job's event reads its failed
// pod (podSignals). It is priced from every child pod still there, and measured
// (once for u) on the root-cause Job's pods.
func (w *Watcher) jobSetEvent(ctx context.Context, js *jobsetapi.JobSet, cond *metav1.Condition, run *jobSetRun, rc rootCause, u *runUsage) *failure.Event {
	ev := &failure.Event{ID: JobSetEventID(js), Time: cond.LastTransitionTime.UTC(), Source: "kubernetes",
		Job: describeJobSet(js, rc.rjob, w.o.GPUTypeLabel)}
	ev.Failure = failure.Signals{Reason: cond.Reason, Message: cond.Message}
	if start := runStart(run.jobs); !start.IsZero() {
		ev.Failure.DurationSeconds = cond.LastTransitionTime.Sub(start).Seconds()
	}
	ev.Failure.Cost, ev.Failure.Unpriced = priceJobSet(w.o.Catalogue, js, run, cond.LastTransitionTime.Time, w.o.GPUTypeLabel)
	rj := replicatedJob(js, rc.rjob)
	if rc.job != nil && rj != nil {
		probe := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: js.Namespace, Name: rc.job.Name, Annotations: jobSetAnnotations(js, rj)},
			Spec: rc.job.Spec}
		ev.Failure.Usage = w.measure(ctx, u, probe, run.pods[rc.job.UID], cond.LastTransitionTime.Time)
	}
	if rc.pod == nil {
		return ev
	}
	ev.Job.Labels[LabelFailedPod] = rc.pod.Name
	annotations := js.Annotations
	if rj != nil {
		annotations = jobSetAnnotations(js, rj)
	}
	w.podSignals(ctx, rc.pod, annotations, &ev.Failure)
	return ev
}

// runStart is when the earliest of jobs started (zero if none has).
func runStart(jobs []*batchv1.Job) time.Time {
	var t time.Time
	for _, j := range jobs {
		if s := j.Status.StartTime; s != nil && (t.IsZero() || s.Time.Before(t)) {
			t = s.Time
		}
	}
	return t
}

// priceJobSet prices a JobSet's run: each child Job still there as priceJob prices
// a Job (its pods; one still running when the JobSet ended counts to end), and
// notes for the Jobs that are not (the JobSet controller deletes the peers of a
// failed Job, and every Job when it restarts).
func priceJobSet(cat *failure.Catalogue, js *jobsetapi.JobSet, run *jobSetRun, end time.Time, gpuLabel string) (float64, string) {
	if cat == nil {
		return 0, "no price catalogue to price it with"
	}
	var (
		dollars float64
		notes   []string // the JobSet's first, then its Jobs'
		perJob  []string
	)
	for _, j := range run.jobs {
		jobEnd := end
		if c, ok := jobFailed(j); ok {
			jobEnd = c.LastTransitionTime.Time
		} else if c, ok := jobCondition(j, batchv1.JobComplete); ok {
			jobEnd = c.LastTransitionTime.Time
		}
		d, note := priceJob(cat, j, run.pods[j.UID], jobEnd, gpuLabel)
		dollars += d
		if note != "" {
			perJob = append(perJob, "job "+j.Name+": "+note)
		}
	}
	want := 0
	for _, rj := range js.Spec.ReplicatedJobs {
		want += int(max(rj.Replicas, 1))
	}
	if gone := want - len(run.jobs); gone > 0 {
		notes = append(notes, fmt.Sprintf("%d of the JobSet's %d Jobs were not there to price (deleted by the JobSet controller when another failed, or by a person)", gone, want))
	}
	if n := js.Status.Restarts; n > 0 {
		notes = append(notes, fmt.Sprintf("the runs before its %d restarts are not priced (their Jobs are gone)", n))
	}
	return priced(dollars, append(notes, perJob...))
}

package remediate

import (
	"cmp"
	"context"
	"io"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/failure"
)

// jobFailed returns the Job's Failed=True condition, if it has one.
func jobFailed(job *batchv1.Job) (*batchv1.JobCondition, bool) {
	return jobCondition(job, batchv1.JobFailed)
}

func jobCondition(job *batchv1.Job, t batchv1.JobConditionType) (*batchv1.JobCondition, bool) {
	for i := range job.Status.Conditions {
		c := &job.Status.Conditions[i]
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return c, true
		}
	}
	return nil, false
}

// JobEventID is the id of the failure event of one Job: a Job is one attempt, so its
// uid names the failure whoever publishes it, however often.
func JobEventID(job *batchv1.Job) string { return "k8s-job-" + string(job.UID) }

// StuckEventID is the id of the event of a Job whose pods cannot start (an image
// that cannot be pulled, no node that fits): one per Job, whichever pod and reason
// (ErrImagePull and ImagePullBackOff alternate) shows it first.
func StuckEventID(job *batchv1.Job) string { return JobEventID(job) + "-stuck" }

// jobEvent builds the FailureEvent of a failed Job from its Failed condition and its
// last failed Pod (pods: the Job's pods), priced and measured (the peaks of the
// UsageSource, once for u) from all of them.
func (w *Watcher) jobEvent(ctx context.Context, job *batchv1.Job, cond *batchv1.JobCondition, pods []*corev1.Pod, u *runUsage) *failure.Event {
	ev := &failure.Event{ID: JobEventID(job), Time: cond.LastTransitionTime.UTC(), Source: "kubernetes", Job: w.jobOf(job)}
	ev.Failure = failure.Signals{Reason: cond.Reason, Message: cond.Message}
	if job.Status.StartTime != nil {
		ev.Failure.DurationSeconds = cond.LastTransitionTime.Sub(job.Status.StartTime.Time).Seconds()
	}
	ev.Failure.Cost, ev.Failure.Unpriced = priceJob(w.o.Catalogue, job, pods, cond.LastTransitionTime.Time, w.o.GPUTypeLabel)
	ev.Failure.Usage = w.measure(ctx, u, job, pods, cond.LastTransitionTime.Time)
	pod := lastFailed(pods)
	if pod == nil || cond.Reason == batchv1.JobReasonDeadlineExceeded {
		return ev // a deadline is the Job's failure, not its pods'
	}
	w.podSignals(ctx, pod, job.Annotations, &ev.Failure)
	return ev
}

// podSignals fills s from a failed or stuck pod: the container's termination (state or
// last state), eviction or disruption, the node and the log tail.
func (w *Watcher) podSignals(ctx context.Context, pod *corev1.Pod, annotations map[string]string, s *failure.Signals) {
	s.Node = pod.Spec.NodeName
	name := ""
	if c, err := mainContainer(&pod.Spec, annotations); err == nil {
		name = c.Name
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if name != "" && cs.Name != name {
			continue
		}
		t := cs.State.Terminated
		if t == nil {
			t = cs.LastTerminationState.Terminated
		}
		switch {
		case t != nil && (t.ExitCode != 0 || t.Reason == "OOMKilled"):
			s.Reason, s.ExitCode = t.Reason, int(t.ExitCode)
			s.Message = cmp.Or(t.Message, s.Message)
			if !t.StartedAt.IsZero() && !t.FinishedAt.IsZero() {
				s.DurationSeconds = t.FinishedAt.Sub(t.StartedAt.Time).Seconds()
			}
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			s.Reason, s.Message = cs.State.Waiting.Reason, cs.State.Waiting.Message
		}
		if s.Node != "" && (t != nil || cs.State.Running != nil) {
			// A terminated state is this container's; a last state is the one before
			// the restart, whose log is the previous one.
			s.LogTail = w.logTail(ctx, pod, cs.Name, cs.State.Terminated == nil && t != nil)
		}
	}
	// What happened to the pod says more than how its container ended: an evicted or
	// preempted container was killed (137, 143) for reasons of the node's.
	if pod.Status.Reason != "" { // Evicted, and the like
		s.Reason, s.Message = pod.Status.Reason, pod.Status.Message
	}
	if c := disruption(pod); c != nil {
		s.Reason, s.Message = string(corev1.DisruptionTarget), cmp.Or(c.Message, c.Reason)
	}
	if c := unschedulable(pod); c != nil && s.Reason == "" {
		s.Reason, s.Message = c.Reason, c.Message
	}
}

// logTail reads the last lines of a container's log through the API (bounded). The
// kubelet serves it; when it cannot (the node is gone), the event goes without.
func (w *Watcher) logTail(ctx context.Context, pod *corev1.Pod, container string, previous bool) string {
	if w.o.LogLines <= 0 {
		return ""
	}
	lines, limit := int64(w.o.LogLines), int64(failure.MaxLogTail)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req := w.client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
		Container: container, TailLines: &lines, LimitBytes: &limit, Previous: previous})
	rc, err := req.Stream(ctx)
	if err != nil {
		return ""
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(io.LimitReader(rc, limit))
	if err != nil {
		return ""
	}
	return strings.TrimRight(string(b), "\n")
}

func disruption(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

func unschedulable(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return c
		}
	}
	return nil
}

// lastFailed is the pod that failed last.
func lastFailed(pods []*corev1.Pod) *corev1.Pod {
	var failed []*corev1.Pod
	for _, p := range pods {
		if p.Status.Phase == corev1.PodFailed {
			failed = append(failed, p)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	sort.Slice(failed, func(i, j int) bool { return finished(failed[i]).Before(finished(failed[j])) })
	return failed[len(failed)-1]
}

func finished(p *corev1.Pod) time.Time {
	var t time.Time
	for _, cs := range p.Status.ContainerStatuses {
		if term := cs.State.Terminated; term != nil && term.FinishedAt.After(t) {
			t = term.FinishedAt.Time
		}
	}
	if t.IsZero() {
		t = p.CreationTimestamp.Time
	}
	return t
}

// jobOf describes a Job as the event's job: identity, chain, configuration.
func (w *Watcher) jobOf(job *batchv1.Job) failure.Job { return describeJob(job, w.o.GPUTypeLabel) }

// describeJob describes a Job as an event's job; gpuLabel is the node label naming
// GPU models.
func describeJob(job *batchv1.Job, gpuLabel string) failure.Job {
	kind := failure.JobKind(job.Labels[failure.LabelKind])
	if !kind.Valid() || kind == failure.Deployment { // a Job is never a Deployment, whatever its label says
		kind = failure.Batch
	}
	j := describeWorkload(&job.ObjectMeta, kind, &job.Spec.Template.Spec, job.Annotations, gpuLabel)
	if queued(job.Labels) && job.Spec.Suspend != nil && *job.Spec.Suspend {
		j.Labels[LabelNotAdmitted] = "true"
	}
	return j
}

// describeWorkload describes the workload of meta (a Job, a JobSet) as an event's
// job of kind: its chain from meta's labels and annotations, its configuration from
// the main container of spec (named in annotations, as mainContainer reads them).
func describeWorkload(meta *metav1.ObjectMeta, kind failure.JobKind, spec *corev1.PodSpec, annotations map[string]string, gpuLabel string) failure.Job {
	l := meta.Labels
	j := failure.Job{
		Namespace: meta.Namespace, Name: meta.Name, UID: string(meta.UID),
		Kind:     kind,
		Template: cmp.Or(l[failure.LabelTemplate], l[failure.LabelOriginal], meta.Name),
		Pipeline: l[failure.LabelPipeline], Stage: l[failure.LabelStage], Attempt: attemptOfLabels(l),
		Labels: map[string]string{},
	}
	for k, v := range l {
		j.Labels[k] = v
	}
	if chain := meta.Annotations[failure.AnnotationChain]; chain != "" {
		j.Labels[failure.AnnotationChain] = chain
	}
	if c, err := mainContainer(spec, annotations); err == nil {
		j.Image = c.Image
		j.Resources = resourcesOf(c, gpuLabel, spec)
		if b, err := bindings(annotations); err == nil && len(b) > 0 {
			j.Params = paramsOf(c, b)
		}
	}
	if t, err := tunables(annotations); err == nil {
		j.Tunables = t
	}
	return j
}

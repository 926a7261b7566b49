package pipeline

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"
)

// jobSet runs a JobSet stage as job runs a Job stage: creates its JobSet once,
// then follows it and the attempts remediation creates for it (new JobSets with
// the same labels) to the end. A JobSet labelled as the stage's that autofix did
// not create for the run fails the stage.
func (d *Driver) jobSet(ctx context.Context, def *Definition, run string, s *Stage, input string) (StageStatus, error) {
	ss := StageStatus{Name: s.Name, Phase: Running, Artifact: artifact(def, run, s.Name)}
	if d.JobSets == nil { // observing only: Step refuses to run it so
		ss.Phase, ss.Message = Pending, "JobSets are not read: kubernetes.kinds does not name JobSet"
		return ss, nil
	}
	jc := d.JobSets.JobsetV1alpha2().JobSets(def.Namespace)
	sets, err := jc.List(ctx, metav1.ListOptions{LabelSelector: d.selector(def, run, s.Name)})
	if err != nil {
		return ss, err
	}
	for i := range sets.Items {
		if err := stageOwner(&sets.Items[i].ObjectMeta, "jobset", def, run, s); err != nil {
			ss.Object = sets.Items[i].Name
			return d.refuse(ss, err), nil
		}
	}
	switch {
	case len(sets.Items) == 0 && d.Observe:
		ss.Phase, ss.Message = Pending, "not started"
		return ss, nil
	case len(sets.Items) == 0:
		js, err := d.newJobSet(def, run, s, input)
		if err != nil {
			return ss, err
		}
		ss.Object, ss.Attempts = js.Name, 1
		_, err = jc.Create(ctx, js, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Not among the stage's JobSets listed above: whose is it?
			existing, err := jc.Get(ctx, js.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return ss, nil // gone again: the next step creates it
			}
			if err != nil {
				return ss, err
			}
			if err := stageOwner(&existing.ObjectMeta, "jobset", def, run, s); err != nil {
				return d.refuse(ss, err), nil
			}
			return ss, nil // this run's, and the list was behind
		}
		if err != nil {
			return ss, err
		}
		d.log().Info("stage started", "pipeline", def.Name, "run", run, "stage", s.Name, "jobset", js.Name)
		return ss, nil
	}
	ss.Attempts = len(sets.Items)
	var latest *jobsetapi.JobSet
	for i := range sets.Items {
		js := &sets.Items[i]
		if jobSetDone(js, jobsetapi.JobSetCompleted) {
			ss.Phase, ss.Object = Succeeded, js.Name
			return ss, nil
		}
		if latest == nil || attemptOf(js) > attemptOf(latest) {
			latest = js
		}
	}
	ss.Object = latest.Name
	return d.remediation(ctx, ss, latest, jobSetDone(latest, jobsetapi.JobSetFailed))
}

// newJobSet is the JobSet of stage s of run: its spec with the stage's artifacts on
// the first container of every replicated job, whose Jobs fail with their first
// failed pod (backoffLimit 0, restartPolicy Never) unless the spec says otherwise, and the stage's labels and annotations.
func (d *Driver) newJobSet(def *Definition, run string, s *Stage, input string) (*jobsetapi.JobSet, error) {
	spec := s.JobSet.DeepCopy()
	for i := range spec.ReplicatedJobs {
		job := &spec.ReplicatedJobs[i].Template.Spec
		if job.BackoffLimit == nil {
			zero := int32(0)
			job.BackoffLimit = &zero
		}
		if job.Template.Spec.RestartPolicy == "" {
			job.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
		}
		withArtifacts(&job.Template.Spec.Containers[0], def, run, s, input)
	}
	l, ann, err := stageMeta(def, run, s)
	if err != nil {
		return nil, err
	}
	return &jobsetapi.JobSet{
		ObjectMeta: metav1.ObjectMeta{Name: jobName(def, run, s), Namespace: def.Namespace, Labels: l, Annotations: ann},
		Spec:       *spec,
	}, nil
}

// jobSetDone reports whether js's condition t is true.
func jobSetDone(js *jobsetapi.JobSet, t jobsetapi.JobSetConditionType) bool {
	for _, c := range js.Status.Conditions {
		if c.Type == string(t) && c.Status == metav1.ConditionTrue {
			return true
		}
	}
	return false
}

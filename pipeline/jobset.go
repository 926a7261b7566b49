package pipeline

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"
)

// jobSet runs a JobSet stage (runStage); its attempts are new JobSets.
func (d *Driver) jobSet(ctx context.Context, def *Definition, run string, s *Stage, input string) (StageStatus, error) {
	if d.JobSets == nil { // observing only: Step refuses to run it so
		return StageStatus{Name: s.Name, Phase: Pending, Artifact: artifact(def, run, s.Name),
			Message: "JobSets are not read: kubernetes.kinds does not name JobSet"}, nil
	}
	jc := d.JobSets.JobsetV1alpha2().JobSets(def.Namespace)
	return runStage(ctx, d, def, run, s, workloads[*jobsetapi.JobSet]{
		kind: "jobset",
		list: func(ctx context.Context, selector string) ([]*jobsetapi.JobSet, error) {
			l, err := jc.List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return nil, err
			}
			return pointers(l.Items), nil
		},
		get: func(ctx context.Context, name string) (*jobsetapi.JobSet, error) {
			return jc.Get(ctx, name, metav1.GetOptions{})
		},
		create: func(ctx context.Context, js *jobsetapi.JobSet) error {
			_, err := jc.Create(ctx, js, metav1.CreateOptions{})
			return err
		},
		build:     func() (*jobsetapi.JobSet, error) { return d.newJobSet(def, run, s, input) },
		succeeded: func(js *jobsetapi.JobSet) bool { return jobSetDone(js, jobsetapi.JobSetCompleted) },
		failed:    func(js *jobsetapi.JobSet) bool { return jobSetDone(js, jobsetapi.JobSetFailed) },
	})
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

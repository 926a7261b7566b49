package remediate

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	jobsetinformers "sigs.k8s.io/jobset/client-go/informers/externalversions"
	jobsetlisters "sigs.k8s.io/jobset/client-go/listers/jobset/v1alpha2"

	"github.com/autofix/autofix/failure"
)

// jobSetController is one Watch of the JobSet adapter: a keyedWatch of JobSet
// informers, in the shape of the Job watcher's controller. What a JobSet ran (its
// child Jobs and their pods) is read from the API server when there is something to
// report — a failure, or an attempt's end — rather than cached: the Job watcher
// caches Jobs and pods already, and a second cache of every pod would double
// autofix's memory for reads this rare.
type jobSetController struct {
	*Watcher // publishing, pod signals, peaks, what was sent and reported
}

// Watch watches the JobSets of the adapter's namespaces until ctx ends: a JobSet
// whose Failed condition is True becomes one event (JobSetEventID), and a JobSet
// autofix created that completes or fails is reported to sink.
func (a *JobSets) Watch(ctx context.Context, pub Publisher, sink OutcomeSink) error {
	w := newWatcher(a.client, pub, sink, a.o.Watch)
	if w.err != nil {
		return w.err
	}
	c := &jobSetController{Watcher: w}
	return keyedWatch[jobsetlisters.JobSetLister]{kind: "jobset", resource: "jobsets",
		unsynced: "is the JobSet CRD installed, and may autofix list jobsets there?",
		open: func(ns string) (informerFactory, cache.SharedInformer, jobsetlisters.JobSetLister) {
			f := jobsetinformers.NewSharedInformerFactoryWithOptions(a.js, 0, jobsetinformers.WithNamespace(ns))
			inf := f.Jobset().V1alpha2().JobSets()
			return f, inf.Informer(), inf.Lister()
		},
		sync: func(ctx context.Context, l jobsetlisters.JobSetLister, key cache.ObjectName) error {
			js, err := l.JobSets(key.Namespace).Get(key.Name)
			if apierrors.IsNotFound(err) {
				return nil // deleted: a JobSet that is gone is not re-created
			}
			if err != nil {
				return err
			}
			return c.sync(ctx, js)
		},
	}.run(ctx, a.o.Watch.Namespaces, w.o.Selector, w.o.Log)
}

// sync reports how a JobSet autofix created ended, and publishes the failure of a
// failed JobSet once.
func (c *jobSetController) sync(ctx context.Context, js *jobsetapi.JobSet) error {
	if !c.selectedLabels(js.Labels) {
		return nil
	}
	var run *jobSetRun // read once, and only when there is something to report
	runOf := func() (*jobSetRun, error) {
		if run != nil {
			return run, nil
		}
		r, err := readJobSetRun(ctx, c, js)
		if err == nil {
			run = r
		}
		return r, err
	}
	if err := c.trackJobSet(ctx, js, runOf); err != nil {
		return err
	}
	cond := jobSetCondition(js, jobsetapi.JobSetFailed)
	if cond == nil || c.sent(JobSetEventID(js)) || time.Since(cond.LastTransitionTime.Time) > c.o.MaxAge {
		return nil
	}
	r, err := runOf()
	if err != nil {
		return err
	}
	var usage runUsage
	return c.publish(ctx, c.jobSetEvent(ctx, js, cond, r, findRootCause(js, cond, r), &usage))
}

// readJobSetRun reads what js ran: the Jobs it controls (labelled with its uid, as
// the JobSet controller labels them) and their pods (each controlled by one of
// them: a label is anyone's to copy).
func readJobSetRun(ctx context.Context, c *jobSetController, js *jobsetapi.JobSet) (*jobSetRun, error) {
	sel := labels.Set{jobsetapi.JobSetUIDKey: string(js.UID)}.String()
	jobs, err := c.client.BatchV1().Jobs(js.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list the jobs of jobset %s/%s: %w", js.Namespace, js.Name, err)
	}
	run := &jobSetRun{pods: map[types.UID][]*corev1.Pod{}}
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if owner := metav1.GetControllerOfNoCopy(j); owner != nil && owner.UID == js.UID {
			run.jobs = append(run.jobs, j)
			run.pods[j.UID] = nil
		}
	}
	if len(run.jobs) == 0 {
		return run, nil
	}
	pods, err := c.client.CoreV1().Pods(js.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list the pods of jobset %s/%s: %w", js.Namespace, js.Name, err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		owner := metav1.GetControllerOfNoCopy(p)
		if owner == nil {
			continue
		}
		if list, ok := run.pods[owner.UID]; ok {
			run.pods[owner.UID] = append(list, p)
		}
	}
	return run, nil
}

// trackJobSet reports how a JobSet autofix created ended, once it has: its
// configuration is that of the replicated job it sized (AnnotationReplicatedJob),
// its cost every child pod's, its peaks those of that replicated job's pods.
func (c *jobSetController) trackJobSet(ctx context.Context, js *jobsetapi.JobSet, runOf func() (*jobSetRun, error)) error {
	id := js.Annotations[failure.AnnotationRemediation]
	if c.sink == nil || js.Labels[failure.LabelManaged] != "true" || id == "" {
		return nil
	}
	cond, succeeded := jobSetCondition(js, jobsetapi.JobSetCompleted), true
	if cond == nil {
		if cond, succeeded = jobSetCondition(js, jobsetapi.JobSetFailed), false; cond == nil {
			return nil
		}
	}
	if c.finished.has(string(js.UID)) {
		return nil
	}
	rjob := js.Annotations[AnnotationReplicatedJob]
	if replicatedJob(js, rjob) == nil && len(js.Spec.ReplicatedJobs) > 0 {
		rjob = js.Spec.ReplicatedJobs[0].Name
	}
	j := describeJobSet(js, rjob, c.o.GPUTypeLabel)
	o := failure.Outcome{Template: j.Template, Attempt: j.Attempt, Succeeded: succeeded, Resources: j.Resources, Params: j.Params}
	run, err := runOf()
	if err != nil {
		return err
	}
	if start := runStart(run.jobs); !start.IsZero() {
		o.DurationSeconds = cond.LastTransitionTime.Sub(start).Seconds()
	}
	o.Cost, o.Unpriced = priceJobSet(c.o.Catalogue, js, run, cond.LastTransitionTime.Time, c.o.GPUTypeLabel)
	if rj := replicatedJob(js, rjob); rj != nil {
		var pods []*corev1.Pod
		for _, job := range run.jobs {
			if job.Labels[jobsetapi.ReplicatedJobNameKey] == rjob {
				pods = append(pods, run.pods[job.UID]...)
			}
		}
		probe := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: js.Namespace, Name: js.Name, Annotations: jobSetAnnotations(js, rj)},
			Spec: rj.Template.Spec}
		o.Usage = c.measure(ctx, nil, probe, pods, cond.LastTransitionTime.Time)
	}
	claim := AttemptJob{Remediation: id, Namespace: js.Namespace, Name: js.Name, Token: js.Annotations[failure.AnnotationAttemptToken]}
	if err := c.sink.Finished(ctx, claim, succeeded, o); err != nil {
		return err
	}
	c.finished.add(string(js.UID), time.Now())
	return nil
}

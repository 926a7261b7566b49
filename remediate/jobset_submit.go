package remediate

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	jobsetclient "sigs.k8s.io/jobset/client-go/clientset/versioned"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/podsafety"
)

// LabelQueueName is Kueue's label naming the LocalQueue a workload is admitted
// through. A fix keeps it (with every other label), and is created suspended so
// that Kueue admits it as it admitted the failed one.
const LabelQueueName = "kueue.x-k8s.io/queue-name"

// JobSets is the adapter of JobSets (jobset.x-k8s.io/v1alpha2): a failed JobSet is
// one event, and its fix a new JobSet.
type JobSets struct {
	client kubernetes.Interface
	js     jobsetclient.Interface
	o      AdapterOptions
	sub    *Submitter // the Job path's option logic: resources, GPU model, parameters
	sel    labels.Selector
}

// NewJobSets returns the JobSet adapter: it reads JobSets and creates them through
// js, and reads their Jobs, pods and logs through client.
func NewJobSets(client kubernetes.Interface, js jobsetclient.Interface, o AdapterOptions) (*JobSets, error) {
	if o.Watch.GPUTypeLabel == "" {
		o.Watch.GPUTypeLabel = "nvidia.com/gpu.product"
	}
	sel := labels.Everything()
	if o.Watch.Selector != "" {
		var err error
		if sel, err = labels.Parse(o.Watch.Selector); err != nil {
			return nil, fmt.Errorf("selector %q: %w", o.Watch.Selector, err)
		}
	}
	return &JobSets{client: client, js: js, o: o, sel: sel,
		sub: NewSubmitter(client, SubmitterOptions{GPUTypeLabel: o.Watch.GPUTypeLabel, Pods: o.Pods})}, nil
}

// Kind is KindJobSet.
func (a *JobSets) Kind() string { return KindJobSet }

// Verify checks a JobSet's failure event: the JobSet exists in a watched namespace
// with the event's uid, matches the selector, the id is JobSetEventID's, and its
// Failed condition is True. The replicated job that failed comes from the
// condition (the Job it names first); only when it names none does the event's
// claim count, and then only if the JobSet has a replicated job of that name.
func (a *JobSets) Verify(ctx context.Context, ev *failure.Event) (Verified, error) {
	j := &ev.Job
	switch {
	case j.UID == "":
		return Verified{}, unverified("job.uid: required to act on a cluster")
	case len(validation.IsDNS1123Label(j.Namespace)) > 0:
		return Verified{}, unverified("job.namespace: %q is not a namespace name", j.Namespace)
	case len(validation.IsDNS1123Subdomain(j.Name)) > 0:
		return Verified{}, unverified("job.name: %q is not the name of a Kubernetes object", j.Name)
	case !watches(a.o.Watch.Namespaces, j.Namespace):
		return Verified{}, unverified("namespace %q is not one autofix watches", j.Namespace)
	case ev.ID != jobSetEventPrefix+j.UID:
		return Verified{}, unverified("id %q: the failure of JobSet %s/%s is reported as %q", ev.ID, j.Namespace, j.Name, jobSetEventPrefix+j.UID)
	}
	js, err := a.js.JobsetV1alpha2().JobSets(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && string(js.UID) != j.UID {
		return Verified{}, unverified("no JobSet %s/%s with uid %s exists (a JobSet that is gone is not re-created)", j.Namespace, j.Name, j.UID)
	}
	if err != nil {
		return Verified{}, fmt.Errorf("read jobset %s/%s: %w", j.Namespace, j.Name, err)
	}
	if !a.sel.Matches(labels.Set(js.Labels)) {
		return Verified{}, unverified("JobSet %s/%s does not match the selector %q", j.Namespace, j.Name, a.o.Watch.Selector)
	}
	if owner := metav1.GetControllerOf(js); owner != nil {
		// A JobSet another object controls (a Kubeflow TrainJob, say): a copy would
		// run orphaned, outside whatever admitted its owner.
		return Verified{}, unverified("JobSet %s/%s is controlled by %s %s: autofix fixes only JobSets nothing else controls",
			j.Namespace, j.Name, owner.Kind, owner.Name)
	}
	cond := jobSetCondition(js, jobsetapi.JobSetFailed)
	if cond == nil {
		return Verified{}, unverified("JobSet %s/%s has not failed (no Failed condition)", j.Namespace, j.Name)
	}
	rjob := ""
	if name := firstFailedJobName(cond); name != "" {
		rjob = replicatedJobOfChild(js, name)
	}
	claimed := j.Labels[jobsetapi.ReplicatedJobNameKey]
	switch {
	case rjob != "" && claimed != "" && claimed != rjob:
		return Verified{}, unverified("JobSet %s/%s: replicated job %q failed first, not %q", j.Namespace, j.Name, rjob, claimed)
	case rjob == "" && replicatedJob(js, claimed) != nil:
		rjob = claimed
	case rjob == "" && len(js.Spec.ReplicatedJobs) == 1:
		rjob = js.Spec.ReplicatedJobs[0].Name
	case rjob == "":
		return Verified{}, unverified("JobSet %s/%s: neither its Failed condition nor the event names one of its replicated jobs", j.Namespace, j.Name)
	}
	out := Verified{Job: describeJobSet(js, rjob, a.o.Watch.GPUTypeLabel), JobSet: js, ReplicatedJob: rjob}
	if pod := j.Labels[LabelFailedPod]; strings.HasPrefix(pod, js.Name+"-"+rjob+"-") && len(validation.IsDNS1123Subdomain(pod)) == 0 {
		out.Job.Labels[LabelFailedPod] = pod // for people; nothing acts on it
	}
	if js.Labels[failure.LabelManaged] == "true" {
		out.Remediation, out.Token = js.Annotations[failure.AnnotationRemediation], js.Annotations[failure.AnnotationAttemptToken]
	}
	return out, nil
}

// Created reports whether the attempt's JobSet exists and is autofix's for this
// remediation (Submitter.Created for JobSets).
func (a *JobSets) Created(ctx context.Context, sub *Submission) (bool, error) {
	got, err := a.js.JobsetV1alpha2().JobSets(sub.Namespace).Get(ctx, sub.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, classify(fmt.Errorf("look for jobset %s/%s: %w", sub.Namespace, sub.Name, err))
	case isAttempt(got, sub):
		return true, nil
	}
	return false, fmt.Errorf("a JobSet %s/%s exists that autofix did not create for remediation %s: %w",
		sub.Namespace, sub.Name, sub.Remediation, ErrCannotSubmit)
}

// CreateFrom creates the attempt's JobSet from the verified one (NewAttempt).
func (a *JobSets) CreateFrom(ctx context.Context, sub *Submission, v Verified) error {
	if v.JobSet == nil || v.JobSet.Namespace != sub.Namespace || v.JobSet.Name != sub.FailedJob || string(v.JobSet.UID) != sub.FailedUID {
		return fmt.Errorf("%s/%s is not the JobSet verified for this fix: %w", sub.Namespace, sub.FailedJob, ErrCannotSubmit)
	}
	failed, err := a.o.Kueue.jobSetWithoutInjected(ctx, v.JobSet)
	if err != nil {
		return classify(err)
	}
	js, err := a.NewAttempt(failed, v.ReplicatedJob, sub)
	if err != nil {
		return fmt.Errorf("%w: %w", err, ErrCannotSubmit)
	}
	_, err = a.js.JobsetV1alpha2().JobSets(sub.Namespace).Create(ctx, js, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		if done, err := a.Created(ctx, sub); done || err != nil {
			return err
		}
	}
	if err != nil {
		return classify(fmt.Errorf("create jobset %s/%s: %w", sub.Namespace, sub.Name, err))
	}
	return nil
}

// NewAttempt builds the JobSet for sub from the failed one: its spec (failure and
// success policies, startup policy, network, coordinator and the rest as written)
// with the chosen option applied to the replicated job rjob that failed and to
// every other replicated job whose pod template is the same as its (the same pods,
// which would fail the same way), nodes to avoid kept off by every replicated job,
// and the chain's labels and annotations; every label of the failed JobSet is kept
// (Kueue's queue and priority class among them). A JobSet Kueue admits
// (LabelQueueName) is created suspended, for Kueue to admit. Every pod template is
// held to the pod policy.
func (a *JobSets) NewAttempt(failed *jobsetapi.JobSet, rjob string, sub *Submission) (*jobsetapi.JobSet, error) {
	who := fmt.Sprintf("jobset %s/%s", failed.Namespace, failed.Name)
	target := replicatedJob(failed, rjob)
	if target == nil {
		return nil, fmt.Errorf("%s has no replicated job %q", who, rjob)
	}
	sized := map[string]bool{} // the replicated jobs the option applies to
	for _, rj := range failed.Spec.ReplicatedJobs {
		sized[rj.Name] = rj.Name == rjob || equality.Semantic.DeepEqual(rj.Template.Spec.Template.Spec, target.Template.Spec.Template.Spec)
	}
	spec := failed.Spec.DeepCopy()
	opt := sub.Option
	b, err := bindings(failed.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", who, err)
	}
	for i := range spec.ReplicatedJobs {
		rj := &spec.ReplicatedJobs[i]
		jobSpec := &rj.Template.Spec
		jobSpec.Selector, jobSpec.ManualSelector = nil, nil
		tmpl := &jobSpec.Template
		for _, l := range serverLabels {
			delete(tmpl.Labels, l)
			delete(rj.Template.Labels, l)
		}
		tmpl.Labels = withChain(tmpl.Labels, sub)
		field := fmt.Sprintf("spec.replicatedJobs[%d].template.spec.template", i)
		if err := podsafety.CheckTemplate(tmpl, field, a.o.Pods); err != nil {
			return nil, fmt.Errorf("%s: %w", who, err)
		}
		avoidNodes(&tmpl.Spec, opt.AvoidNodes)
		if !sized[rj.Name] {
			continue
		}
		c, err := mainContainer(&tmpl.Spec, jobSetAnnotations(failed, rj))
		if err != nil {
			return nil, fmt.Errorf("%s replicated job %s: %w", who, rj.Name, err)
		}
		if err := a.sub.applyOption(&tmpl.Spec, c, b, opt); err != nil {
			return nil, fmt.Errorf("%s replicated job %s: %w", who, rj.Name, err)
		}
		if jobSpec.ActiveDeadlineSeconds, err = deadline(opt, jobSpec.ActiveDeadlineSeconds); err != nil {
			return nil, err
		}
	}
	labels := maps.Clone(failed.Labels)
	if _, queued := labels[LabelQueueName]; queued {
		suspend := true
		spec.Suspend = &suspend
	}
	annotations := attemptAnnotations(failed.Annotations, sub)
	annotations[AnnotationReplicatedJob] = rjob
	return &jobsetapi.JobSet{
		ObjectMeta: metav1.ObjectMeta{Name: sub.Name, Namespace: sub.Namespace, Labels: withChain(labels, sub), Annotations: annotations},
		Spec:       *spec,
	}, nil
}

// watches reports whether namespaces (empty: all) cover ns.
func watches(namespaces []string, ns string) bool {
	for _, n := range watchedNamespaces(namespaces) {
		if n == metav1.NamespaceAll || n == ns {
			return true
		}
	}
	return false
}

package remediate

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	jobsetinformers "sigs.k8s.io/jobset/client-go/informers/externalversions"
	jobsetlisters "sigs.k8s.io/jobset/client-go/listers/jobset/v1alpha2"

	"github.com/autofix/autofix/failure"
)

// jobSetController is one Watch of the JobSet adapter: an informer on JobSets per
// watched namespace, and a work queue of their keys, in the shape of the Job
// watcher's controller. What a JobSet ran (its child Jobs and their pods) is read
// from the API server when there is something to report — a failure, or an
// attempt's end — rather than cached: the Job watcher caches Jobs and pods already,
// and a second cache of every pod would double autofix's memory for reads this
// rare.
type jobSetController struct {
	*Watcher // publishing, pod signals, peaks, what was sent and reported
	queue    workqueue.TypedRateLimitingInterface[cache.ObjectName]
	listers  map[string]jobsetlisters.JobSetLister // by namespace ("" for all)

	mu    sync.Mutex
	ready map[string]bool
}

// Watch watches the JobSets of the adapter's namespaces until ctx ends: a JobSet
// whose Failed condition is True becomes one event (JobSetEventID), and a JobSet
// autofix created that completes or fails is reported to sink.
func (a *JobSets) Watch(ctx context.Context, pub Publisher, sink OutcomeSink) error {
	w := newWatcher(a.client, pub, sink, a.o.Watch)
	if w.err != nil {
		return w.err
	}
	c := &jobSetController{Watcher: w, listers: map[string]jobsetlisters.JobSetLister{}, ready: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName]())}
	ctx, cancel := context.WithCancel(ctx)
	var (
		factories []jobsetinformers.SharedInformerFactory
		wg        sync.WaitGroup
	)
	defer func() {
		cancel()
		c.queue.ShutDown()
		wg.Wait()
		for _, f := range factories {
			f.Shutdown()
		}
	}()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(old, cur any) {
			o, err1 := meta.Accessor(old)
			n, err2 := meta.Accessor(cur)
			if err1 == nil && err2 == nil && o.GetResourceVersion() == n.GetResourceVersion() {
				return // a resync
			}
			c.enqueue(cur)
		},
	}
	for _, ns := range watchedNamespaces(a.o.Watch.Namespaces) {
		f := jobsetinformers.NewSharedInformerFactoryWithOptions(a.js, 0, jobsetinformers.WithNamespace(ns))
		factories = append(factories, f)
		inf := f.Jobset().V1alpha2().JobSets()
		reg, err := inf.Informer().AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("watch the JobSets of namespace %q: %w", ns, err)
		}
		c.listers[ns] = inf.Lister()
		wg.Go(func() { c.await(ctx, ns, reg.HasSynced) })
	}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	wg.Go(func() {
		<-ctx.Done()
		c.queue.ShutDown()
	})
	w.o.Log.Info("watching jobsets", "namespaces", watchedNamespaces(a.o.Watch.Namespaces), "selector", w.o.Selector)
	for c.processNext(ctx) {
	}
	return nil
}

// await marks namespace ns ready once its informer has synced; one autofix may
// not list JobSets in (no RoleBinding of autofix-jobsets, or no JobSet CRD) never
// does, and the log says so after a minute.
func (c *jobSetController) await(ctx context.Context, ns string, synced cache.InformerSynced) {
	warn := time.AfterFunc(time.Minute, func() {
		c.o.Log.Error("watcher: jobsets not synced after a minute; is the JobSet CRD installed, and may autofix list jobsets there?",
			"namespace", cmp.Or(ns, "(all)"))
	})
	defer warn.Stop()
	if !cache.WaitForCacheSync(ctx.Done(), synced) {
		return
	}
	c.mu.Lock()
	c.ready[ns] = true
	c.mu.Unlock()
}

func (c *jobSetController) enqueue(obj any) {
	if m, err := meta.Accessor(obj); err == nil {
		c.queue.Add(cache.ObjectName{Namespace: m.GetNamespace(), Name: m.GetName()})
	}
}

// lister returns what covers namespace ns, and whether its cache has synced.
func (c *jobSetController) lister(ns string) (jobsetlisters.JobSetLister, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.listers[ns]; ok {
		return l, c.ready[ns]
	}
	l := c.listers[metav1.NamespaceAll]
	return l, c.ready[metav1.NamespaceAll]
}

// processNext handles one key as the Job watcher does: success forgets it, an error
// requeues it with backoff for as long as it lasts (Kafka or the ledger down).
func (c *jobSetController) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	if ctx.Err() != nil {
		return false
	}
	l, ready := c.lister(key.Namespace)
	switch {
	case l == nil:
		c.queue.Forget(key)
		return true
	case !ready:
		c.queue.AddAfter(key, time.Second)
		return true
	}
	js, err := l.JobSets(key.Namespace).Get(key.Name)
	if err == nil {
		err = c.sync(ctx, js)
	} else if apierrors.IsNotFound(err) {
		err = nil // deleted: a JobSet that is gone is not re-created
	}
	settle(ctx, c.queue, key, 0, err, c.o.Log, "jobset")
	return true
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

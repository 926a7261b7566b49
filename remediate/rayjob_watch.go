package remediate

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/autofix/autofix/failure"
)

// rayJobController is one Watch of the RayJob adapter: a dynamic informer on
// RayJobs per watched namespace and a work queue of their keys, in the shape of
// the JobSet adapter's. The pods of a RayJob's cluster are read from the API
// server when there is something to report (a failure, an attempt's end), not
// cached.
type rayJobController struct {
	*Watcher // publishing, pod signals, peaks, what was sent and reported
	queue    workqueue.TypedRateLimitingInterface[cache.ObjectName]
	listers  map[string]cache.GenericLister // by namespace ("" for all)

	mu    sync.Mutex
	ready map[string]bool
}

// Watch watches the RayJobs of the adapter's namespaces until ctx ends: a RayJob
// whose jobDeploymentStatus is Failed becomes one event (RayJobEventID), and a
// RayJob autofix created that completes or fails is reported to sink.
func (a *RayJobs) Watch(ctx context.Context, pub Publisher, sink OutcomeSink) error {
	w := newWatcher(a.client, pub, sink, a.o.Watch)
	if w.err != nil {
		return w.err
	}
	c := &rayJobController{Watcher: w, listers: map[string]cache.GenericLister{}, ready: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName]())}
	ctx, cancel := context.WithCancel(ctx)
	var (
		factories []dynamicinformer.DynamicSharedInformerFactory
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
		f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(a.dyn, 0, ns, nil)
		factories = append(factories, f)
		inf := f.ForResource(rayJobGVR)
		reg, err := inf.Informer().AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("watch the RayJobs of namespace %q: %w", ns, err)
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
	w.o.Log.Info("watching rayjobs", "namespaces", watchedNamespaces(a.o.Watch.Namespaces), "selector", w.o.Selector)
	for c.processNext(ctx) {
	}
	return nil
}

// await marks namespace ns ready once its informer has synced; the log says so
// after a minute when it has not (no RayJob CRD, or no RoleBinding of
// autofix-rayjobs there).
func (c *rayJobController) await(ctx context.Context, ns string, synced cache.InformerSynced) {
	warn := time.AfterFunc(time.Minute, func() {
		c.o.Log.Error("watcher: rayjobs not synced after a minute; is the RayJob CRD installed, and may autofix list rayjobs there?",
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

func (c *rayJobController) enqueue(obj any) {
	if m, err := meta.Accessor(obj); err == nil {
		c.queue.Add(cache.ObjectName{Namespace: m.GetNamespace(), Name: m.GetName()})
	}
}

// lister returns what covers namespace ns, and whether its cache has synced.
func (c *rayJobController) lister(ns string) (cache.GenericLister, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.listers[ns]; ok {
		return l, c.ready[ns]
	}
	return c.listers[metav1.NamespaceAll], c.ready[metav1.NamespaceAll]
}

// processNext handles one key as the JobSet watcher does: success forgets it, an
// error requeues it with backoff.
func (c *rayJobController) processNext(ctx context.Context) bool {
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
	obj, err := l.ByNamespace(key.Namespace).Get(key.Name)
	switch {
	case apierrors.IsNotFound(err):
		err = nil // deleted: a RayJob that is gone is not re-created
	case err == nil:
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			err = fmt.Errorf("rayjob %s: a %T in the cache", key, obj)
			break
		}
		var rj *rayJob
		if rj, err = parseRayJob(u); err == nil {
			err = c.sync(ctx, rj)
		}
	}
	settle(ctx, c.queue, key, 0, err, c.o.Log, "rayjob")
	return true
}

// sync reports how a RayJob autofix created ended, and publishes the failure of a
// failed RayJob once.
func (c *rayJobController) sync(ctx context.Context, rj *rayJob) error {
	if !c.selectedLabels(rj.Labels) {
		return nil
	}
	status := rj.Status.JobDeploymentStatus
	if status != rayDeploymentFailed && status != rayDeploymentComplete {
		return nil
	}
	var pods []*corev1.Pod // read once, and only when there is something to report
	read := false
	podsOf := func() ([]*corev1.Pod, error) {
		if read {
			return pods, nil
		}
		p, err := rayPods(ctx, c.client, rj)
		if err == nil {
			pods, read = p, true
		}
		return p, err
	}
	if err := c.trackRayJob(ctx, rj, podsOf); err != nil {
		return err
	}
	id := RayJobEventID(string(rj.UID))
	if status != rayDeploymentFailed || c.sent(id) || time.Since(rj.endedAt()) > c.o.MaxAge {
		return nil
	}
	if metav1.GetControllerOfNoCopy(rj) != nil {
		return nil // a RayCronJob's, say: its owner runs it again
	}
	p, err := podsOf()
	if err != nil {
		return err
	}
	var usage runUsage
	return c.publish(ctx, c.rayJobEvent(ctx, rj, p, &usage))
}

// trackRayJob reports how a RayJob autofix created ended, once it has: succeeded
// when its deployment is Complete and its job SUCCEEDED; its configuration that of
// the group it sized (AnnotationRayGroup), its runtime from its start and end
// times, its cost its cluster's pods', its peaks those of that group's pods.
func (c *rayJobController) trackRayJob(ctx context.Context, rj *rayJob, podsOf func() ([]*corev1.Pod, error)) error {
	id := rj.Annotations[failure.AnnotationRemediation]
	if c.sink == nil || rj.Labels[failure.LabelManaged] != "true" || id == "" || c.finished.has(string(rj.UID)) {
		return nil
	}
	succeeded := rj.Status.JobDeploymentStatus == rayDeploymentComplete && rj.Status.JobStatus == rayJobSucceeded
	group := rj.Annotations[AnnotationRayGroup]
	if rj.template(group) == nil {
		group = RayHeadGroup
	}
	j := describeRayJob(rj, group, c.o.GPUTypeLabel)
	o := failure.Outcome{Template: j.Template, Attempt: j.Attempt, Succeeded: succeeded, Resources: j.Resources, Params: j.Params}
	end := rj.endedAt()
	if s := rj.Status.StartTime; s != nil && !s.IsZero() {
		o.DurationSeconds = end.Sub(s.Time).Seconds()
	}
	pods, err := podsOf()
	if err != nil {
		return err
	}
	o.Cost, o.Unpriced = priceRayJob(c.o.Catalogue, rj, pods, end, c.o.GPUTypeLabel)
	o.Usage = c.measure(ctx, nil, rayProbe(rj, group), groupPods(pods, group), end)
	claim := AttemptJob{Remediation: id, Namespace: rj.Namespace, Name: rj.Name, Token: rj.Annotations[failure.AnnotationAttemptToken]}
	if err := c.sink.Finished(ctx, claim, succeeded, o); err != nil {
		return err
	}
	c.finished.add(string(rj.UID), time.Now())
	return nil
}

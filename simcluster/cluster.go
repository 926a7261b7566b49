// Package simcluster is a simulated Kubernetes cluster behind client-go's own
// interfaces: the API is client-go's fake clientset (made to keep the API server's
// rules that autofix relies on: uids, generations, optimistic concurrency, status
// as a subresource), and small controllers play the Job controller, the Deployment
// and ReplicaSet controllers, the garbage collector and the kubelet, ending each pod
// as the ground truth (truth.go) says for the resources it asks for. `autofix serve`
// runs it when it is given no cluster, so the whole loop — watch, classify,
// recommend, decide, re-submit, follow the outcome, drive a pipeline — works on a
// laptop. Its nodes also expose the series of their pods that a real cluster's
// exporters would (memory working set, GPU memory, local storage), through the part
// of Prometheus's query API the metrics source uses (MetricsAPI). It keeps its
// objects in a file, so it survives a restart of the process.
package simcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Options configure a Cluster.
type Options struct {
	// Path is the file the cluster keeps its objects in ("": nothing is kept).
	Path string
	// Truth ends the pods; Nodes are the nodes (one plain node if none).
	Truth Truth
	Nodes []Node
	// Namespaces are created if missing.
	Namespaces []string
	// Tick is how often the controllers look (default 100 ms).
	Tick time.Duration
	Log  *slog.Logger
}

// Cluster is a simulated cluster.
type Cluster struct {
	o       Options
	client  *fake.Clientset
	kubelet *Kubelet
	version atomic.Int64 // the last resourceVersion given out
	changed atomic.Int64 // writes since the start
	drains  drains       // of the watches served
}

// New builds the cluster, with the objects of its file if it has one, its nodes and
// its namespaces.
func New(o Options) (*Cluster, error) {
	if o.Tick <= 0 {
		o.Tick = 100 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{o: o, client: fake.NewSimpleClientset()}
	c.kubelet = NewKubelet(c.client, o.Truth, o.Nodes...)
	if err := c.load(); err != nil {
		return nil, err
	}
	c.client.PrependReactor("*", "*", c.react)
	c.client.PrependWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if w, ok := action.(k8stesting.WatchActionImpl); ok {
			opts = w.ListOptions
		}
		w, err := c.client.Tracker().Watch(action.GetResource(), action.GetNamespace(), opts)
		if err != nil {
			return false, nil, err
		}
		return true, c.drains.drain(w), nil
	})
	ctx := context.Background()
	for _, ns := range o.Namespaces {
		_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	if err := c.kubelet.Register(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Client is the cluster's API.
func (c *Cluster) Client() kubernetes.Interface { return &client{c.client, c.kubelet} }

// Run runs the kubelet and the controllers until ctx ends; the
// objects are written to the file every second they changed, and at the end.
func (c *Cluster) Run(ctx context.Context) error {
	if err := c.kubelet.Start(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(c.o.Tick)
	defer tick.Stop()
	saved, lastSave := c.changed.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return c.save()
		case <-tick.C:
		}
		c.client.ClearActions() // the fake records every call; nothing here reads them
		if err := c.reconcile(ctx); err != nil && ctx.Err() == nil {
			c.o.Log.Warn("simulated cluster: reconcile", "err", err)
		}
		if n := c.changed.Load(); n != saved && time.Since(lastSave) >= time.Second {
			if err := c.save(); err != nil {
				c.o.Log.Warn("simulated cluster: save", "err", err)
			}
			saved, lastSave = n, time.Now()
		}
	}
}

// react makes the fake API keep the API server's rules autofix relies on. It runs
// under the clientset's lock, before the object tracker.
func (c *Cluster) react(action k8stesting.Action) (bool, runtime.Object, error) {
	if action.GetVerb() != "get" && action.GetVerb() != "list" && action.GetVerb() != "watch" {
		c.drains.settle() // the tracker's watchers panic past 100 events
	}
	tracker := c.client.Tracker()
	// Create and update actions have the same methods: tell them by their verb.
	switch a := action.(type) {
	case k8stesting.CreateActionImpl:
		if a.GetSubresource() == "binding" { // the scheduler's bind: set the node
			b, ok := a.GetObject().(*corev1.Binding)
			if !ok {
				return false, nil, nil
			}
			obj, err := tracker.Get(a.GetResource(), a.GetNamespace(), b.Name)
			if err != nil {
				return true, nil, err
			}
			pod := obj.(*corev1.Pod).DeepCopy()
			pod.Spec.NodeName = b.Target.Name
			return true, b, c.store(tracker, a.GetResource(), pod, a.GetNamespace())
		}
		m, err := meta.Accessor(a.GetObject())
		if err != nil {
			return true, nil, err
		}
		if m.GetName() == "" && m.GetGenerateName() != "" {
			m.SetName(m.GetGenerateName() + suffix(string(uuid.NewUUID()), 0))
		}
		if m.GetUID() == "" {
			m.SetUID(uuid.NewUUID())
		}
		defaultTemplate(a.GetObject())
		m.SetCreationTimestamp(metav1.Now())
		m.SetGeneration(1)
		m.SetResourceVersion(strconv.FormatInt(c.version.Add(1), 10))
		c.changed.Add(1)
		return false, nil, nil // the tracker stores it (or says it exists)
	case k8stesting.UpdateActionImpl:
		obj := a.GetObject()
		m, err := meta.Accessor(obj)
		if err != nil {
			return true, nil, err
		}
		old, err := tracker.Get(a.GetResource(), a.GetNamespace(), m.GetName())
		if err != nil {
			return true, nil, err
		}
		om, _ := meta.Accessor(old)
		if rv := m.GetResourceVersion(); rv != "" && rv != om.GetResourceVersion() {
			return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), m.GetName(),
				errors.New("the object has been modified; please apply your changes to the latest version and try again"))
		}
		obj = obj.DeepCopyObject() // the caller's copy stays as it was
		defaultTemplate(obj)
		merged, err := mergeUpdate(old, obj, a.GetSubresource() == "status")
		if err != nil {
			return true, nil, err
		}
		return true, merged, c.store(tracker, a.GetResource(), merged, a.GetNamespace())
	case k8stesting.DeleteActionImpl:
		c.changed.Add(1)
		return false, nil, nil
	}
	return false, nil, nil
}

// defaultTemplate sets what the API server's defaulting sets and the simulated
// controllers and kubelet read: the restart policy of a Deployment's or ReplicaSet's
// pod template is Always when none is given (a server's pods run on; without it
// the kubelet would end them as if they were a Job's).
func defaultTemplate(obj runtime.Object) {
	var spec *corev1.PodSpec
	switch o := obj.(type) {
	case *appsv1.Deployment:
		spec = &o.Spec.Template.Spec
	case *appsv1.ReplicaSet:
		spec = &o.Spec.Template.Spec
	default:
		return
	}
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = corev1.RestartPolicyAlways
	}
}

// store writes obj with a new resourceVersion.
func (c *Cluster) store(tracker k8stesting.ObjectTracker, gvr schema.GroupVersionResource, obj runtime.Object, ns string) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	m.SetResourceVersion(strconv.FormatInt(c.version.Add(1), 10))
	c.changed.Add(1)
	return tracker.Update(gvr, obj, ns)
}

// mergeUpdate is what the API server stores for an update of old with obj: an update
// of the object keeps the stored status and bumps the generation when the spec
// changes; an update of the status subresource changes only the status. Every kind
// it stores has Spec and Status fields.
func mergeUpdate(old, obj runtime.Object, status bool) (runtime.Object, error) {
	ov := reflect.ValueOf(old).Elem()
	if !ov.FieldByName("Status").IsValid() {
		return obj, nil
	}
	if status {
		out := old.DeepCopyObject()
		reflect.ValueOf(out).Elem().FieldByName("Status").Set(reflect.ValueOf(obj).Elem().FieldByName("Status"))
		return out, nil
	}
	out := obj.DeepCopyObject()
	nv := reflect.ValueOf(out).Elem()
	nv.FieldByName("Status").Set(ov.FieldByName("Status"))
	m, err := meta.Accessor(out)
	if err != nil {
		return nil, err
	}
	om, err := meta.Accessor(old)
	if err != nil {
		return nil, err
	}
	g := om.GetGeneration()
	if spec := ov.FieldByName("Spec"); spec.IsValid() && !apiequality.Semantic.DeepEqual(spec.Interface(), nv.FieldByName("Spec").Interface()) {
		g++
	}
	m.SetGeneration(g)
	return out, nil
}

// snapshot is the file the cluster keeps.
type snapshot struct {
	Version     int64               `json:"version"`
	Namespaces  []corev1.Namespace  `json:"namespaces"`
	Nodes       []corev1.Node       `json:"nodes"`
	Jobs        []batchv1.Job       `json:"jobs"`
	Pods        []corev1.Pod        `json:"pods"`
	Deployments []appsv1.Deployment `json:"deployments"`
	ReplicaSets []appsv1.ReplicaSet `json:"replicaSets"`
	Logs        map[string]string   `json:"logs,omitempty"`
	Usage       []podUsage          `json:"usage,omitempty"`
}

func (c *Cluster) save() error {
	if c.o.Path == "" {
		return nil
	}
	ctx := context.Background()
	s := snapshot{Version: c.version.Load()}
	var err error
	var ns *corev1.NamespaceList
	if ns, err = c.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		return err
	}
	s.Namespaces = ns.Items
	nodes, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	s.Nodes = nodes.Items
	jobs, err := c.client.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	s.Jobs = jobs.Items
	pods, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	s.Pods = pods.Items
	deps, err := c.client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	s.Deployments = deps.Items
	sets, err := c.client.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	s.ReplicaSets = sets.Items
	s.Logs = c.kubelet.allLogs()
	s.Usage = c.kubelet.allUsage()
	b, err := json.Marshal(&s)
	if err != nil {
		return err
	}
	tmp := c.o.Path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) // #nosec G304 -- the data directory
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, c.o.Path)
}

// load reads the file, if there is one. Pods that were running when the process
// stopped start again from the beginning: their kubelet is gone.
func (c *Cluster) load() error {
	if c.o.Path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(c.o.Path), 0o750); err != nil {
		return err
	}
	b, err := os.ReadFile(c.o.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("simulated cluster %s: %w", c.o.Path, err)
	}
	c.version.Store(s.Version)
	t := c.client.Tracker()
	var objs []runtime.Object
	for i := range s.Namespaces {
		objs = append(objs, &s.Namespaces[i])
	}
	for i := range s.Nodes {
		objs = append(objs, &s.Nodes[i])
	}
	for i := range s.Jobs {
		objs = append(objs, &s.Jobs[i])
	}
	for i := range s.Pods {
		p := &s.Pods[i]
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending}
		}
		objs = append(objs, p)
	}
	for i := range s.Deployments {
		objs = append(objs, &s.Deployments[i])
	}
	for i := range s.ReplicaSets {
		objs = append(objs, &s.ReplicaSets[i])
	}
	for _, o := range objs {
		if err := t.Add(o); err != nil {
			return fmt.Errorf("simulated cluster %s: %w", c.o.Path, err)
		}
	}
	c.kubelet.setLogs(s.Logs)
	c.kubelet.setUsage(s.Usage)
	return nil
}

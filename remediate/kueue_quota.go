package remediate

import (
	"context"
	"log/slog"
	"math"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/optimizer"
	"github.com/autofix/autofix/recommender"
)

// Kueue's queues (kueue.x-k8s.io/v1beta2).
var (
	clusterQueueGVR = schema.GroupVersionResource{Group: "kueue.x-k8s.io", Version: "v1beta2", Resource: "clusterqueues"}
	localQueueGVR   = schema.GroupVersionResource{Group: "kueue.x-k8s.io", Version: "v1beta2", Resource: "localqueues"}
)

// KueueQuotas keeps, from watches of Kueue's LocalQueues and ClusterQueues (read
// only), what quota the queue of a queued workload has: it is the recommender's
// recommender.Queues. Run keeps it current.
//
// Kueue admits a workload's pods on one flavor of each resource group of its
// ClusterQueue; what is left of a flavor is its nominal quota less what admitted and
// reserving workloads hold (status.flavorsReservation) other than the failed run,
// plus what the queue may borrow from its cohort (what the members lend, up to
// their lendingLimit, less what members already use beyond their guaranteed quota,
// borrowing siblings included; up to its own borrowingLimit). Hierarchical cohorts
// (Cohort objects with quotas of their own) are not read: a queue borrows only from
// its siblings here, which errs on the side of less room.
type KueueQuotas struct {
	client     dynamic.Interface
	namespaces []string
	log        *slog.Logger

	mu     sync.RWMutex
	local  map[string]string        // namespace/name of a LocalQueue -> its ClusterQueue
	queues map[string]*clusterQueue // ClusterQueues by name
}

// NewKueueQuotas returns a KueueQuotas reading LocalQueues in namespaces (none or
// "": every namespace) and every ClusterQueue through client.
func NewKueueQuotas(client dynamic.Interface, namespaces []string, log *slog.Logger) *KueueQuotas {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KueueQuotas{client: client, namespaces: watchedNamespaces(namespaces), log: log,
		local: map[string]string{}, queues: map[string]*clusterQueue{}}
}

// Quotas returns a KueueQuotas reading through k's client.
func (k *Kueue) Quotas(namespaces []string, log *slog.Logger) *KueueQuotas {
	return NewKueueQuotas(k.client, namespaces, log)
}

// clusterQueue is the part of a ClusterQueue the quota is read from.
type clusterQueue struct {
	Spec struct {
		CohortName     string `json:"cohortName"`
		ResourceGroups []struct {
			CoveredResources []corev1.ResourceName `json:"coveredResources"`
			Flavors          []struct {
				Name      string `json:"name"`
				Resources []struct {
					Name           corev1.ResourceName `json:"name"`
					NominalQuota   resource.Quantity   `json:"nominalQuota"`
					BorrowingLimit *resource.Quantity  `json:"borrowingLimit"`
					LendingLimit   *resource.Quantity  `json:"lendingLimit"`
				} `json:"resources"`
			} `json:"flavors"`
		} `json:"resourceGroups"`
	} `json:"spec"`
	Status struct {
		FlavorsReservation []struct {
			Name      string `json:"name"`
			Resources []struct {
				Name  corev1.ResourceName `json:"name"`
				Total resource.Quantity   `json:"total"`
			} `json:"resources"`
		} `json:"flavorsReservation"`
	} `json:"status"`
}

// quota is one resource of one flavor of a ClusterQueue, in the unit autofix sizes
// it in (bytes, millicores, GPUs).
type quota struct {
	nominal, reserved float64
	borrowing         float64 // what it may borrow at most (+Inf: no limit)
	lendable          float64 // what of its unused quota it may lend at most
}

// quotaOf reads resource res of flavor in q; ok is false when q has no quota of it.
func (q *clusterQueue) quotaOf(flavor string, res corev1.ResourceName) (out quota, ok bool) {
	for _, g := range q.Spec.ResourceGroups {
		for _, f := range g.Flavors {
			if f.Name != flavor {
				continue
			}
			for _, r := range f.Resources {
				if r.Name != res {
					continue
				}
				out = quota{nominal: amount(res, r.NominalQuota), borrowing: math.Inf(1)}
				out.lendable = out.nominal
				if r.BorrowingLimit != nil {
					out.borrowing = amount(res, *r.BorrowingLimit)
				}
				if r.LendingLimit != nil {
					out.lendable = min(out.nominal, amount(res, *r.LendingLimit))
				}
				ok = true
			}
		}
	}
	for _, f := range q.Status.FlavorsReservation {
		if f.Name != flavor {
			continue
		}
		for _, r := range f.Resources {
			if r.Name == res {
				out.reserved = amount(res, r.Total)
			}
		}
	}
	return out, ok
}

// amount is q in the unit autofix sizes res in: millicores for CPU, else its value.
// As a float: Value and MilliValue overflow past int64 (a quota written huge, as
// "no limit", would read as none).
func amount(res corev1.ResourceName, q resource.Quantity) float64 {
	if res == corev1.ResourceCPU {
		return q.AsApproximateFloat64() * 1000
	}
	return q.AsApproximateFloat64()
}

// Room implements recommender.Queues.
func (k *KueueQuotas) Room(ev *failure.Event) (recommender.QueueRoom, bool) {
	name := ev.Job.Labels[LabelQueueName]
	if name == "" {
		return recommender.QueueRoom{}, false
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	cqName, ok := k.local[ev.Job.Namespace+"/"+name]
	if !ok {
		return recommender.QueueRoom{}, false
	}
	cq, ok := k.queues[cqName]
	if !ok {
		return recommender.QueueRoom{}, false
	}
	room := recommender.QueueRoom{ClusterQueue: cqName, LocalQueue: name}
	for _, g := range cq.Spec.ResourceGroups {
		now, ever := optimizer.QuotaGroup{Covers: covered(g.CoveredResources)}, optimizer.QuotaGroup{Covers: covered(g.CoveredResources)}
		for _, f := range g.Flavors {
			var n, e failure.Resources
			for _, res := range g.CoveredResources {
				q, _ := cq.quotaOf(f.Name, res)
				ever := q.nominal + min(q.borrowing, k.lendable(cqName, cq.Spec.CohortName, f.Name, res))
				setRoom(&e, res, ever)
				setRoom(&n, res, min(ever, k.left(cqName, cq.Spec.CohortName, q, f.Name, res)+freed(ev, res)))
			}
			now.Room, ever.Room = append(now.Room, n), append(ever.Room, e)
		}
		room.Now.Groups, room.Ever.Groups = append(room.Now.Groups, now), append(room.Ever.Groups, ever)
	}
	return room, true
}

// LabelNotAdmitted marks, in a failure event's job.labels, a queued Job that is
// suspended: Kueue has not admitted it, so it holds none of its queue's quota.
const LabelNotAdmitted = "autofix.io/kueue-not-admitted"

// freed is what the failed run of ev held of res: Kueue releases it once it marks
// the failed workload's Workload finished, which may come after autofix decides,
// so it counts as free (on every flavor: which one it held is not read). A Job
// Kueue has not admitted (LabelNotAdmitted) held nothing.
func freed(ev *failure.Event, res corev1.ResourceName) float64 {
	if ev.Job.Labels[LabelNotAdmitted] == "true" {
		return 0
	}
	r := ev.Job.Resources
	switch res {
	case corev1.ResourceMemory:
		return float64(r.MemoryBytes)
	case corev1.ResourceCPU:
		return float64(r.CPUMillis)
	case ResourceGPU:
		return float64(r.GPU)
	case corev1.ResourceEphemeralStorage:
		return float64(r.EphemeralStorageBytes)
	}
	return 0
}

// lendable is what the other ClusterQueues of cohort could lend of res of
// flavor: their lending limits (their nominal quotas where they set none). No
// cohort lends nothing.
func (k *KueueQuotas) lendable(self, cohort, flavor string, res corev1.ResourceName) (ever float64) {
	if cohort == "" {
		return 0
	}
	for name, other := range k.queues {
		if name == self || other.Spec.CohortName != cohort {
			continue
		}
		if q, ok := other.quotaOf(flavor, res); ok {
			ever += q.lendable
		}
	}
	return ever
}

// left is what ClusterQueue self (its quota q of res of flavor) may still be
// admitted now, as Kueue reckons it: what is left of its own guaranteed quota (the
// part it does not lend), plus what is left of the cohort's pool (what every
// member lends, less what every member uses beyond its guaranteed quota, siblings
// that borrow included), within its borrowing limit. No cohort: its nominal quota
// less what it holds.
func (k *KueueQuotas) left(self, cohort string, q quota, flavor string, res corev1.ResourceName) float64 {
	if cohort == "" {
		return q.nominal - q.reserved
	}
	guaranteed := q.nominal - q.lendable
	pool, used := q.lendable, max(0, q.reserved-guaranteed)
	for name, other := range k.queues {
		if name == self || other.Spec.CohortName != cohort {
			continue
		}
		if o, ok := other.quotaOf(flavor, res); ok {
			pool += o.lendable
			used += max(0, o.reserved-(o.nominal-o.lendable))
		}
	}
	return min(max(0, guaranteed-q.reserved)+max(0, pool-used), q.nominal+q.borrowing-q.reserved)
}

// covered says which of the resources autofix sizes a resource group covers.
func covered(names []corev1.ResourceName) optimizer.Covered {
	var c optimizer.Covered
	for _, n := range names {
		switch n {
		case corev1.ResourceMemory:
			c.Memory = true
		case corev1.ResourceCPU:
			c.CPU = true
		case ResourceGPU:
			c.GPU = true
		case corev1.ResourceEphemeralStorage:
			c.EphemeralStorage = true
		}
	}
	return c
}

// setRoom sets r's field for res to v (rounded down; none below zero).
func setRoom(r *failure.Resources, res corev1.ResourceName, v float64) {
	v = max(0, math.Floor(v))
	n := int64(math.MaxInt64) // float64(MaxInt64) is 2^63, which int64 cannot hold
	if v < math.MaxInt64 {
		n = int64(v)
	}
	switch res {
	case corev1.ResourceMemory:
		r.MemoryBytes = n
	case corev1.ResourceCPU:
		r.CPUMillis = n
	case ResourceGPU:
		r.GPU = int(min(n, math.MaxInt32))
	case corev1.ResourceEphemeralStorage:
		r.EphemeralStorageBytes = n
	}
}

// Run keeps k current until ctx ends: it watches the LocalQueues of its namespaces
// and every ClusterQueue. Until both are listed, Room knows no queue.
func (k *KueueQuotas) Run(ctx context.Context) error {
	var synced []cache.InformerSynced
	var factories []dynamicinformer.DynamicSharedInformerFactory
	watch := func(f dynamicinformer.DynamicSharedInformerFactory, gvr schema.GroupVersionResource, set func(*unstructured.Unstructured), del func(*unstructured.Unstructured)) error {
		inf := f.ForResource(gvr).Informer()
		_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { k.apply(obj, set) },
			UpdateFunc: func(_, obj any) { k.apply(obj, set) },
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				k.apply(obj, del)
			},
		})
		synced = append(synced, inf.HasSynced)
		factories = append(factories, f)
		return err
	}
	const resync = 0 // the watches carry every change
	cluster := dynamicinformer.NewDynamicSharedInformerFactory(k.client, resync)
	if err := watch(cluster, clusterQueueGVR, k.setClusterQueue, k.deleteClusterQueue); err != nil {
		return err
	}
	for _, ns := range k.namespaces {
		f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(k.client, resync, ns, nil)
		if err := watch(f, localQueueGVR, k.setLocalQueue, k.deleteLocalQueue); err != nil {
			return err
		}
	}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	k.log.Info("Kueue's queues are read: retries of queued workloads stay within their ClusterQueue's quota")
	<-ctx.Done()
	for _, f := range factories {
		f.Shutdown()
	}
	return nil
}

// apply hands obj to fn when it is an unstructured object.
func (k *KueueQuotas) apply(obj any, fn func(*unstructured.Unstructured)) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		fn(u)
	}
}

func (k *KueueQuotas) setClusterQueue(u *unstructured.Unstructured) {
	var cq clusterQueue
	if err := fromUnstructured(u, &cq); err != nil {
		k.log.Warn("a ClusterQueue cannot be read; its queues are not limited", "clusterQueue", u.GetName(), "err", err)
		k.deleteClusterQueue(u)
		return
	}
	k.mu.Lock()
	k.queues[u.GetName()] = &cq
	k.mu.Unlock()
}

func (k *KueueQuotas) deleteClusterQueue(u *unstructured.Unstructured) {
	k.mu.Lock()
	delete(k.queues, u.GetName())
	k.mu.Unlock()
}

func (k *KueueQuotas) setLocalQueue(u *unstructured.Unstructured) {
	cq, _, err := unstructured.NestedString(u.Object, "spec", "clusterQueue")
	if err != nil || cq == "" {
		k.deleteLocalQueue(u)
		return
	}
	k.mu.Lock()
	k.local[u.GetNamespace()+"/"+u.GetName()] = cq
	k.mu.Unlock()
}

func (k *KueueQuotas) deleteLocalQueue(u *unstructured.Unstructured) {
	k.mu.Lock()
	delete(k.local, u.GetNamespace()+"/"+u.GetName())
	k.mu.Unlock()
}

var _ recommender.Queues = (*KueueQuotas)(nil)

package remediate

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/failure"
)

// Review (issue 15): what a ClusterQueue may borrow now is what its cohort has
// left, and a sibling that already borrows has taken some of it: the room left now
// must not count another sibling's unused quota that is lent out already.
func TestReviewKueueQuotasRoomCountsWhatSiblingsBorrow(t *testing.T) {
	k := NewKueueQuotas(nil, []string{"team-a"}, nil)
	cq := func(name, reserved string) {
		k.setClusterQueue(object(t, `{"metadata": {"name": "`+name+`"}, "spec": {"cohortName": "research", "resourceGroups": [
			{"coveredResources": ["memory"], "flavors": [{"name": "on-demand", "resources": [{"name": "memory", "nominalQuota": "10Gi"}]}]}]},
			"status": {"flavorsReservation": [{"name": "on-demand", "resources": [{"name": "memory", "total": "`+reserved+`"}]}]}}`))
	}
	// Cohort research: 30Gi in all; a-cq uses nothing, b-cq 15Gi (5Gi borrowed, from
	// c-cq's unused 10Gi), c-cq nothing. 15Gi is left for a-cq, not 20Gi.
	cq("a-cq", "0")
	cq("b-cq", "15Gi")
	cq("c-cq", "0")
	k.setLocalQueue(object(t, `{"metadata": {"name": "team", "namespace": "team-a"}, "spec": {"clusterQueue": "a-cq"}}`))
	room, ok := k.Room(&failure.Event{Job: failure.Job{Namespace: "team-a", Name: "train", Labels: map[string]string{LabelQueueName: "team"}}})
	if !ok {
		t.Fatal("Room: queue team not known")
	}
	gib := int64(1 << 30)
	if got, want := room.Now.Groups[0].Room[0].MemoryBytes, 15*gib; got != want {
		t.Errorf("room now %d GiB, want %d GiB (the cohort's 30Gi less the 15Gi in use)", got/gib, want/gib)
	}
	if got, want := room.Ever.Groups[0].Room[0].MemoryBytes, 30*gib; got != want {
		t.Errorf("room ever %d GiB, want %d GiB", got/gib, want/gib)
	}
}

// Review (issue 15): a ClusterQueue whose quota is written huge ("no limit" in
// practice) leaves a retry unlimited, not without room: the quantities must not
// overflow to zero (resource.Quantity.Value and MilliValue do past int64).
func TestReviewKueueQuotasHugeQuotaIsNoLimit(t *testing.T) {
	k := NewKueueQuotas(nil, []string{"team-a"}, nil)
	k.setClusterQueue(object(t, `{"metadata": {"name": "big-cq"}, "spec": {"resourceGroups": [
		{"coveredResources": ["cpu", "memory"], "flavors": [{"name": "any", "resources": [
			{"name": "cpu", "nominalQuota": "1e17"}, {"name": "memory", "nominalQuota": "100Ei"}]}]}]}}`))
	k.setLocalQueue(object(t, `{"metadata": {"name": "team", "namespace": "team-a"}, "spec": {"clusterQueue": "big-cq"}}`))
	room, ok := k.Room(&failure.Event{Job: failure.Job{Namespace: "team-a", Name: "train", Labels: map[string]string{LabelQueueName: "team"}}})
	if !ok {
		t.Fatal("Room: queue team not known")
	}
	const plenty = int64(1) << 60
	for name, r := range map[string]failure.Resources{"now": room.Now.Groups[0].Room[0], "ever": room.Ever.Groups[0].Room[0]} {
		if r.MemoryBytes < plenty || r.CPUMillis < plenty {
			t.Errorf("room %s = %d bytes, %d millicores; want no limit in practice (at least 2^60 each)", name, r.MemoryBytes, r.CPUMillis)
		}
	}
}

// Review (issue 15): a queued Job Kueue did not admit (its stuck event, from
// syncQueued) never held any of its queue's quota: the room left now must not
// count its request as freed, or the very configuration Kueue refuses looks as if
// it would be admitted at once.
func TestReviewKueueQuotasRoomOfAJobKueueDidNotAdmit(t *testing.T) {
	pub := &events{}
	c, _ := testController(t, WatcherOptions{Kueue: newKueue(pendingWorkload(20*time.Minute, metav1.ConditionFalse)), InadmissibleAfter: 10 * time.Minute},
		pub, nil, waitingJob())
	if _, err := c.sync(context.Background(), jobKeyOf(waitingJob())); err != nil || len(pub.evs) != 1 {
		t.Fatalf("sync = %v, published %q; want the stuck event", err, pub.ids())
	}
	ev := pub.evs[0]
	if ev.Job.Resources.CPUMillis == 0 {
		t.Fatalf("event %+v asks for no CPU", ev.Job)
	}
	k := NewKueueQuotas(nil, nil, nil)
	k.setClusterQueue(object(t, `{"metadata": {"name": "cq"}, "spec": {"resourceGroups": [
		{"coveredResources": ["cpu"], "flavors": [{"name": "reserved", "resources": [{"name": "cpu", "nominalQuota": "64"}]}]}]},
		"status": {"flavorsReservation": [{"name": "reserved", "resources": [{"name": "cpu", "total": "60"}]}]}}`))
	k.setLocalQueue(object(t, `{"metadata": {"name": "`+ev.Job.Labels[LabelQueueName]+`", "namespace": "`+ev.Job.Namespace+`"}, "spec": {"clusterQueue": "cq"}}`))
	room, ok := k.Room(ev)
	if !ok {
		t.Fatal("Room: queue not known")
	}
	if got := room.Now.Groups[0].Room[0].CPUMillis; got != 4000 {
		t.Errorf("room now %d millicores, want 4000 (64 less the 60 others hold; the Job Kueue did not admit holds none)", got)
	}
}

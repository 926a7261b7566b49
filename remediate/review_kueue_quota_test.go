package remediate

import (
	"testing"

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

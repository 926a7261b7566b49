package remediate

import (
	"encoding/json"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/optimizer"
)

// object decodes a JSON object into an unstructured one.
func object(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal([]byte(s), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestKueueQuotasRoom(t *testing.T) {
	k := NewKueueQuotas(nil, []string{"team-a"}, nil)
	// team-cq: 64Gi and 16 CPUs of on-demand, 40Gi of it reserved; 4 GPUs of a100,
	// 3 in use; in cohort research, where it may borrow up to 16Gi.
	k.setClusterQueue(object(t, `{"metadata": {"name": "team-cq"}, "spec": {"cohortName": "research", "resourceGroups": [
		{"coveredResources": ["cpu", "memory"], "flavors": [{"name": "on-demand", "resources": [
			{"name": "cpu", "nominalQuota": "16"}, {"name": "memory", "nominalQuota": "64Gi", "borrowingLimit": "16Gi"}]}]},
		{"coveredResources": ["nvidia.com/gpu"], "flavors": [{"name": "a100", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 4}]}]}]},
		"status": {"flavorsReservation": [{"name": "on-demand", "resources": [{"name": "cpu", "total": "4"}, {"name": "memory", "total": "40Gi"}]},
			{"name": "a100", "resources": [{"name": "nvidia.com/gpu", "total": "3"}]}]}}`))
	// Its sibling lends at most 8Gi of its 32Gi, of which 28Gi is reserved: 4Gi now.
	k.setClusterQueue(object(t, `{"metadata": {"name": "other-cq"}, "spec": {"cohortName": "research", "resourceGroups": [
		{"coveredResources": ["cpu", "memory"], "flavors": [{"name": "on-demand", "resources": [
			{"name": "cpu", "nominalQuota": "8"}, {"name": "memory", "nominalQuota": "32Gi", "lendingLimit": "8Gi"}]}]}]},
		"status": {"flavorsReservation": [{"name": "on-demand", "resources": [{"name": "memory", "total": "28Gi"}]}]}}`))
	// A queue of another cohort lends nothing.
	k.setClusterQueue(object(t, `{"metadata": {"name": "far-cq"}, "spec": {"cohortName": "elsewhere", "resourceGroups": [
		{"coveredResources": ["memory"], "flavors": [{"name": "on-demand", "resources": [{"name": "memory", "nominalQuota": "1Ti"}]}]}]}}`))
	k.setLocalQueue(object(t, `{"metadata": {"name": "team", "namespace": "team-a"}, "spec": {"clusterQueue": "team-cq"}}`))

	ev := &failure.Event{Job: failure.Job{Namespace: "team-a", Name: "train", Labels: map[string]string{LabelQueueName: "team"}}}
	room, ok := k.Room(ev)
	if !ok {
		t.Fatal("Room: queue team not known")
	}
	gib := int64(1 << 30)
	want := []struct {
		name      string
		now, ever []failure.Resources
	}{
		// now: 64-40 = 24Gi + 4Gi borrowed now; ever: 64Gi + 8Gi (the sibling's lending limit, under the 16Gi borrowing limit).
		// CPU: the sibling lends all its 8 when unused.
		{"cpu and memory", []failure.Resources{{MemoryBytes: 28 * gib, CPUMillis: 20000}}, []failure.Resources{{MemoryBytes: 72 * gib, CPUMillis: 24000}}},
		{"GPUs", []failure.Resources{{GPU: 1}}, []failure.Resources{{GPU: 4}}},
	}
	if room.ClusterQueue != "team-cq" || room.LocalQueue != "team" || len(room.Now.Groups) != 2 || len(room.Ever.Groups) != 2 {
		t.Fatalf("room = %+v, want team-cq's two groups", room)
	}
	for i, w := range want {
		if got := room.Now.Groups[i].Room; !slices.Equal(got, w.now) {
			t.Errorf("%s now: %+v, want %+v", w.name, got, w.now)
		}
		if got := room.Ever.Groups[i].Room; !slices.Equal(got, w.ever) {
			t.Errorf("%s ever: %+v, want %+v", w.name, got, w.ever)
		}
	}
	if c := room.Now.Groups[0].Covers; c != (optimizer.Covered{Memory: true, CPU: true}) {
		t.Errorf("group 0 covers %+v, want CPU and memory", c)
	}

	// The failed run's own share counts as free (Kueue may not have released it yet),
	// up to what the queue could ever admit.
	held := *ev
	held.Job.Resources = failure.Resources{MemoryBytes: 8 * gib, CPUMillis: 8000}
	if room, _ := k.Room(&held); room.Now.Groups[0].Room[0] != (failure.Resources{MemoryBytes: 36 * gib, CPUMillis: 24000}) {
		t.Errorf("with the failed run's 8Gi and 8 CPUs freed, room now %+v; want 36Gi and 24 CPUs (capped at ever)", room.Now.Groups[0].Room[0])
	}

	// Unknown: another namespace's queue of that name, no queue label, a queue whose
	// ClusterQueue is gone.
	for _, ev := range []*failure.Event{
		{Job: failure.Job{Namespace: "team-b", Labels: map[string]string{LabelQueueName: "team"}}},
		{Job: failure.Job{Namespace: "team-a"}},
	} {
		if _, ok := k.Room(ev); ok {
			t.Errorf("Room(%s, %v) known, want unknown", ev.Job.Namespace, ev.Job.Labels)
		}
	}
	k.deleteClusterQueue(object(t, `{"metadata": {"name": "team-cq"}}`))
	if _, ok := k.Room(ev); ok {
		t.Error("a LocalQueue whose ClusterQueue is gone still has room")
	}
}

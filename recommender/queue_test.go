package recommender_test

import (
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/optimizer"
	"github.com/autofix/autofix/recommender"
)

// fixedQueues reports one queue's room for events labelled with it.
type fixedQueues struct{ room recommender.QueueRoom }

func (f fixedQueues) Room(ev *failure.Event) (recommender.QueueRoom, bool) {
	if ev.Job.Labels["kueue.x-k8s.io/queue-name"] != f.room.LocalQueue {
		return recommender.QueueRoom{}, false
	}
	return f.room, true
}

// memoryRoom is a queue whose one group covers CPU and memory, with now and ever
// bytes of memory on its one flavor.
func memoryRoom(now, ever int64) recommender.QueueRoom {
	group := func(mem int64) optimizer.QueueQuota {
		return optimizer.QueueQuota{Groups: []optimizer.QuotaGroup{{Covers: optimizer.Covered{Memory: true, CPU: true},
			Room: []failure.Resources{{MemoryBytes: mem, CPUMillis: 64000}}}}}
	}
	return recommender.QueueRoom{ClusterQueue: "team-cq", LocalQueue: "team", Now: group(now), Ever: group(ever)}
}

func queuedOOM() *failure.Event {
	ev := oomEvent()
	ev.Job.Namespace = "team-a"
	ev.Job.Labels = map[string]string{"kueue.x-k8s.io/queue-name": "team"}
	return ev
}

func TestRetriesStayWithinTheQueuesQuota(t *testing.T) {
	free, ok := newRecommender(t).Recommend(queuedOOM(), nil).ChosenOption()
	if !ok {
		t.Fatal("no retry without a queue")
	}
	need := free.Resources.MemoryBytes

	tests := []struct {
		name      string
		now, ever int64
		wantRetry bool
		wantMax   int64 // the chosen memory at most
		wantWait  bool  // the explanation says it waits for quota
	}{
		{name: "room now", now: 1 << 40, ever: 1 << 40, wantRetry: true, wantMax: need},
		{name: "room only once others finish", now: 16 << 30, ever: 1 << 40, wantRetry: true, wantMax: need, wantWait: true},
		{name: "never room for more than the failed run", now: 16 << 30, ever: 16 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecommender(t)
			room := memoryRoom(tt.now, tt.ever)
			r.SetQueues(fixedQueues{room})
			rec := r.Recommend(queuedOOM(), nil)
			if rec.Retry != tt.wantRetry {
				t.Fatalf("retry %v, want %v: %s", rec.Retry, tt.wantRetry, rec.Explanation)
			}
			for _, o := range rec.Options {
				if !room.Ever.Feasible(&o) {
					t.Errorf("option %s is more than the queue could ever admit (%s)", failure.FormatBytes(o.Resources.MemoryBytes), failure.FormatBytes(tt.ever))
				}
			}
			if !tt.wantRetry {
				if !strings.Contains(rec.Explanation, "queue's quotas") {
					t.Errorf("explanation %q does not name the queue's quota", rec.Explanation)
				}
				return
			}
			chosen, _ := rec.ChosenOption()
			if chosen.Resources.MemoryBytes > tt.wantMax {
				t.Errorf("chosen memory %s, want at most %s", failure.FormatBytes(chosen.Resources.MemoryBytes), failure.FormatBytes(tt.wantMax))
			}
			if waits := strings.Contains(rec.Explanation, "waits in queue team"); waits != tt.wantWait {
				t.Errorf("explanation %q: says it waits %v, want %v", rec.Explanation, waits, tt.wantWait)
			}
		})
	}

	// A workload of another queue (or none) is not held to team's quota.
	r := newRecommender(t)
	r.SetQueues(fixedQueues{memoryRoom(16<<30, 16<<30)})
	other := queuedOOM()
	other.Job.Labels["kueue.x-k8s.io/queue-name"] = "elsewhere"
	if got, ok := r.Recommend(other, nil).ChosenOption(); !ok || got.Resources != free.Resources {
		t.Errorf("another queue's workload got %+v (retry %v), want the unconstrained %+v", got.Resources, ok, free.Resources)
	}
}

// BenchmarkRecommendQueued is BenchmarkRecommendGPU's failure in a Kueue queue:
// "fits" has room now for the unconstrained choice (one search, with the queue's
// filter); "waits" has room only once others finish, so the search runs twice
// (room now, then room ever).
func BenchmarkRecommendQueued(b *testing.B) {
	ev, history := gpuEvent()
	ev.Job.Labels = map[string]string{"kueue.x-k8s.io/queue-name": "team"}
	free, ok := newRecommender(b).Recommend(ev, history).ChosenOption()
	if !ok {
		b.Fatal("no retry without a queue")
	}
	room := func(gpus int) optimizer.QueueQuota {
		return optimizer.QueueQuota{Groups: []optimizer.QuotaGroup{
			{Covers: optimizer.Covered{Memory: true, CPU: true}, Room: []failure.Resources{{MemoryBytes: 1 << 40, CPUMillis: 1 << 20}}},
			{Covers: optimizer.Covered{GPU: true}, Room: []failure.Resources{{GPU: gpus}}}}}
	}
	for _, tc := range []struct {
		name      string
		now, ever int
	}{{"fits", 64, 64}, {"waits", 1, 64}} {
		b.Run(tc.name, func(b *testing.B) {
			r := newRecommender(b)
			r.SetQueues(fixedQueues{recommender.QueueRoom{ClusterQueue: "cq", LocalQueue: "team", Now: room(tc.now), Ever: room(tc.ever)}})
			rec := r.Recommend(ev, history)
			if got, ok := rec.ChosenOption(); !ok || got.Resources.GPU > free.Resources.GPU ||
				strings.Contains(rec.Explanation, "waits in queue") != (tc.name == "waits") {
				b.Fatalf("chosen %+v (retry %v): %s", got.Resources, ok, rec.Explanation)
			}
			b.ReportAllocs()
			for b.Loop() {
				r.Recommend(ev, history)
			}
		})
	}
}

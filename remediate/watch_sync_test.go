package remediate

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/autofix/autofix/failure"
)

// The handler tests below build a controller over informers that never run, put
// objects into the informers' indexers, and call the event handlers and sync
// directly: what they check happens before the call returns.

// events is a Publisher that keeps what it was given, and fails while err is set.
type events struct {
	mu  sync.Mutex
	evs []*failure.Event
	err error
}

func (p *events) Publish(_ context.Context, ev *failure.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.evs = append(p.evs, ev)
	return nil
}

func (p *events) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, ev := range p.evs {
		out = append(out, ev.ID)
	}
	return out
}

func (p *events) failWith(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// outcomes is an OutcomeSink that keeps what it was told.
type outcomes struct {
	mu   sync.Mutex
	jobs []string // "namespace/name succeeded|failed"
}

func (s *outcomes) Finished(_ context.Context, job AttemptJob, succeeded bool, _ failure.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	how := "failed"
	if succeeded {
		how = "succeeded"
	}
	s.jobs = append(s.jobs, job.Namespace+"/"+job.Name+" "+how)
	return nil
}

// testController is a controller over the informers of a factory that is never
// started, with objs in their indexers.
func testController(t *testing.T, o WatcherOptions, pub Publisher, sink OutcomeSink, objs ...runtime.Object) (*controller, informers.SharedInformerFactory) {
	t.Helper()
	if o.LogLines == 0 {
		o.LogLines = -1
	}
	client := fake.NewClientset()
	f := informers.NewSharedInformerFactory(client, 0)
	w, err := NewWatcherWithInformers(client, pub, sink, o, Source{Namespace: metav1.NamespaceAll, Factory: f})
	if err != nil {
		t.Fatal(err)
	}
	c, err := newController(w, w.sources)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	fill(t, f, objs...)
	return c, f
}

// fill puts objs into the indexers of f's informers.
func fill(t *testing.T, f informers.SharedInformerFactory, objs ...runtime.Object) {
	t.Helper()
	for _, obj := range objs {
		var inf cache.SharedIndexInformer
		switch obj.(type) {
		case *batchv1.Job:
			inf = f.Batch().V1().Jobs().Informer()
		case *corev1.Pod:
			inf = f.Core().V1().Pods().Informer()
		case *appsv1.Deployment:
			inf = f.Apps().V1().Deployments().Informer()
		case *appsv1.ReplicaSet:
			inf = f.Apps().V1().ReplicaSets().Informer()
		default:
			t.Fatalf("fill: %T", obj)
		}
		if err := inf.GetIndexer().Add(obj); err != nil {
			t.Fatal(err)
		}
	}
}

// failedAt is failedJob failed (BackoffLimitExceeded) ago before now, named name.
func failedAt(name string, ago time.Duration) *batchv1.Job {
	j := failedJob()
	j.Name, j.UID, j.ResourceVersion = name, types.UID("uid-"+name), "1"
	j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
		Reason: batchv1.JobReasonBackoffLimitExceeded, LastTransitionTime: metav1.NewTime(time.Now().Add(-ago))}}
	return j
}

// podOf is a pod of job, controlled by it, in phase.
func podOf(job *batchv1.Job, name string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace, ResourceVersion: "1", CreationTimestamp: metav1.Now(),
			Labels:          map[string]string{batchv1.ControllerUidLabel: string(job.UID)},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Spec:   corev1.PodSpec{NodeName: "gpu-node-3", Containers: job.Spec.Template.Spec.Containers},
		Status: corev1.PodStatus{Phase: phase},
	}
}

func oomKilled(p *corev1.Pod) *corev1.Pod {
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "train", State: corev1.ContainerState{
		Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}}}}
	return p
}

func jobKeyOf(j *batchv1.Job) queueKey {
	return queueKey{kind: jobKey, namespace: j.Namespace, name: j.Name}
}

func TestSyncJob(t *testing.T) {
	deadline := failedAt("late", time.Minute)
	deadline.Status.Conditions[0].Reason = batchv1.JobReasonDeadlineExceeded
	running := failedAt("running", 0)
	running.Status = batchv1.JobStatus{Active: 1}
	other := failedAt("other-team", time.Minute)
	other.Labels["team"] = "vision"
	tests := []struct {
		name string
		objs []runtime.Object
		job  *batchv1.Job
		// want is the event's id and reason; "" for none.
		wantID, wantReason string
	}{
		{"a recent failure, with its failed pod", []runtime.Object{oomKilled(podOf(failedAt("recent", time.Minute), "recent-x", corev1.PodFailed))},
			failedAt("recent", time.Minute), "k8s-job-uid-recent", "OOMKilled"},
		{"a failure of three days ago", nil, failedAt("old", 72*time.Hour), "", ""},
		{"a Job still running", nil, running, "", ""},
		{"a Job the selector leaves out", nil, other, "", ""},
		{"past its deadline: the Job's failure, not its pods'", nil, deadline, "k8s-job-uid-late", batchv1.JobReasonDeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &events{}
			c, _ := testController(t, WatcherOptions{Selector: "team=nlp"}, pub, nil, append(tt.objs, tt.job)...)
			if _, err := c.sync(context.Background(), jobKeyOf(tt.job)); err != nil {
				t.Fatalf("sync = %v", err)
			}
			var want []string
			if tt.wantID != "" {
				want = []string{tt.wantID}
			}
			if got := pub.ids(); !slices.Equal(got, want) {
				t.Fatalf("published %q, want %q", got, want)
			}
			if tt.wantID != "" && pub.evs[0].Failure.Reason != tt.wantReason {
				t.Errorf("reason %q, want %q", pub.evs[0].Failure.Reason, tt.wantReason)
			}
			// Handled again (an update of the Job): not published again.
			if _, err := c.sync(context.Background(), jobKeyOf(tt.job)); err != nil || len(pub.ids()) != len(want) {
				t.Errorf("second sync = %v, published %q; want nothing more", err, pub.ids())
			}
		})
	}
}

// TestSyncJobWaitsALittleForTheFailedPod: the pod informer may lag the Job's; the
// failure is published without its pod only after three tries.
func TestSyncJobWaitsALittleForTheFailedPod(t *testing.T) {
	pub := &events{}
	job := failedAt("lagging", time.Minute)
	c, _ := testController(t, WatcherOptions{}, pub, nil, job)
	key := jobKeyOf(job)
	for i := range 3 {
		if _, err := c.sync(context.Background(), key); err == nil || !strings.Contains(err.Error(), "not in the cache yet") {
			t.Fatalf("try %d: sync = %v, want an error: the failed pod is not in the cache yet", i+1, err)
		}
		c.queue.AddRateLimited(key) // what processNext does with the error
	}
	if _, err := c.sync(context.Background(), key); err != nil {
		t.Fatalf("fourth try: sync = %v", err)
	}
	if got := pub.ids(); !slices.Equal(got, []string{"k8s-job-uid-lagging"}) {
		t.Errorf("published %q, want the failure without its pod", got)
	}
}

type brokenSpecs struct{}

func (brokenSpecs) KeepSpec(context.Context, *batchv1.Job) error { return errors.New("ledger down") }

func (brokenSpecs) Spec(context.Context, string) (*batchv1.Job, error) {
	return nil, errors.New("ledger down")
}

// TestFailuresArePublishedWhenSpecsCannotBeKept: keeping the spec is a fallback; a
// ledger that cannot take it does not hold the failure back.
func TestFailuresArePublishedWhenSpecsCannotBeKept(t *testing.T) {
	job := failedAt("j", time.Minute)
	pub := &events{}
	c, _ := testController(t, WatcherOptions{Specs: brokenSpecs{}}, pub, nil, job, podOf(job, "j-x", corev1.PodFailed))
	if _, err := c.sync(context.Background(), jobKeyOf(job)); err != nil || len(pub.ids()) != 1 {
		t.Errorf("sync = %v, published %q with a broken spec store; want the failure", err, pub.ids())
	}
}

// TestSyncPodThatCannotStart: a Job's pod that cannot pull its image is reported
// once its pending grace is over, and looked at again then until it is.
func TestSyncPodThatCannotStart(t *testing.T) {
	job := failedAt("j", 0)
	job.Status = batchv1.JobStatus{Active: 1}
	stuck := func(age time.Duration) *corev1.Pod {
		p := podOf(job, "j-x", corev1.PodPending)
		p.CreationTimestamp = metav1.NewTime(time.Now().Add(-age))
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "train",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
		return p
	}
	tests := []struct {
		name      string
		pod       *corev1.Pod
		wantAfter bool // asks to look again later
		want      []string
	}{
		{"within its grace", stuck(time.Minute), true, nil},
		{"past its grace", stuck(3 * time.Minute), false, []string{"k8s-job-uid-j-stuck"}},
		{"pending, nothing wrong", podOf(job, "j-x", corev1.PodPending), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &events{}
			c, _ := testController(t, WatcherOptions{PendingGrace: 2 * time.Minute}, pub, nil, job, tt.pod)
			after, err := c.sync(context.Background(), queueKey{kind: podKey, namespace: "ml", name: "j-x"})
			if err != nil || (after > 0) != tt.wantAfter || after > time.Minute {
				t.Errorf("sync = %s, %v; want a later look %v, within the grace left", after, err, tt.wantAfter)
			}
			if got := pub.ids(); !slices.Equal(got, tt.want) {
				t.Errorf("published %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSyncDeployment: a rollout past its progress deadline, and a Deployment's pod
// in CrashLoopBackOff, are each the rollout's failure.
func TestSyncDeployment(t *testing.T) {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "srv", Namespace: "ml", UID: "d1", Generation: 2, ResourceVersion: "5"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "srv", Image: "srv:2"}}}}},
		Status: appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing,
			Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", LastUpdateTime: metav1.Now()}}}}
	set := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "srv-abc", Namespace: "ml", UID: "rs1",
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dep, appsv1.SchemeGroupVersion.WithKind("Deployment"))}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "srv-abc-x", Namespace: "ml",
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
		Spec: corev1.PodSpec{Containers: dep.Spec.Template.Spec.Containers},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "srv",
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}}}}
	tests := []struct {
		name string
		key  queueKey
		want string
	}{
		{"past its progress deadline", queueKey{kind: deploymentKey, namespace: "ml", name: "srv"}, "k8s-deploy-d1-2"},
		{"a pod crash-looping", queueKey{kind: podKey, namespace: "ml", name: "srv-abc-x"}, "k8s-deploy-d1-2-crashloop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &events{}
			c, _ := testController(t, WatcherOptions{}, pub, nil, dep, set, pod)
			if _, err := c.sync(context.Background(), tt.key); err != nil {
				t.Fatal(err)
			}
			if got := pub.ids(); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("published %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSyncReportsAnAttemptsOutcomeOnce: a finished attempt autofix created is
// reported to the sink once, however often its key comes back.
func TestSyncReportsAnAttemptsOutcomeOnce(t *testing.T) {
	job := failedAt("llm-ft-af2", 0)
	job.Status.Conditions[0].Type = batchv1.JobComplete
	job.Labels[failure.LabelManaged] = "true"
	job.Annotations[failure.AnnotationRemediation] = "k8s-job-0b1c"
	sink := &outcomes{}
	c, _ := testController(t, WatcherOptions{}, &events{}, sink, job)
	for range 2 {
		if _, err := c.sync(context.Background(), jobKeyOf(job)); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"ml/llm-ft-af2 succeeded"}; !slices.Equal(sink.jobs, want) {
		t.Errorf("outcomes %q, want %q", sink.jobs, want)
	}
}

package simcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const revisionAnnotation = "deployment.kubernetes.io/revision"

// maxCreatesPerPass bounds the pods a ReplicaSet creates per pass, as the real
// controller's slow start does.
const maxCreatesPerPass = 50

// reconcile runs each controller once over everything.
func (c *Cluster) reconcile(ctx context.Context) error {
	jobs, err := c.client.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	pods, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	deps, err := c.client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	sets, err := c.client.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	owners := map[types.UID]bool{}
	for i := range jobs.Items {
		owners[jobs.Items[i].UID] = true
	}
	for i := range deps.Items {
		owners[deps.Items[i].UID] = true
	}
	for i := range sets.Items {
		owners[sets.Items[i].UID] = true
	}
	// The garbage collector: what a deleted owner controlled goes too.
	podsOf := map[types.UID][]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		ref := metav1.GetControllerOf(p)
		if ref == nil {
			continue
		}
		if !owners[ref.UID] {
			if err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			c.kubelet.forget(p.Namespace, p.Name)
			continue
		}
		podsOf[ref.UID] = append(podsOf[ref.UID], p)
	}
	setsOf := map[types.UID][]*appsv1.ReplicaSet{}
	for i := range sets.Items {
		rs := &sets.Items[i]
		ref := metav1.GetControllerOf(rs)
		if ref == nil {
			continue
		}
		if !owners[ref.UID] {
			if err := c.client.AppsV1().ReplicaSets(rs.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			continue
		}
		setsOf[ref.UID] = append(setsOf[ref.UID], rs)
	}
	for i := range jobs.Items {
		if err := c.syncJob(ctx, &jobs.Items[i], podsOf[jobs.Items[i].UID]); err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("job %s/%s: %w", jobs.Items[i].Namespace, jobs.Items[i].Name, err)
		}
	}
	for i := range deps.Items {
		if err := c.syncDeployment(ctx, &deps.Items[i], setsOf[deps.Items[i].UID]); err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("deployment %s/%s: %w", deps.Items[i].Namespace, deps.Items[i].Name, err)
		}
	}
	for i := range sets.Items {
		rs := &sets.Items[i]
		if ref := metav1.GetControllerOf(rs); ref != nil && !owners[ref.UID] {
			continue
		}
		if err := c.syncReplicaSet(ctx, rs, podsOf[rs.UID]); err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("replicaset %s/%s: %w", rs.Namespace, rs.Name, err)
		}
	}
	return nil
}

// syncJob is the Job controller for a Job that runs one pod at a time to one
// completion: a new pod while none is active, until one succeeds (Complete) or more
// than backoffLimit have failed (Failed, BackoffLimitExceeded), or the job runs past
// activeDeadlineSeconds (Failed, DeadlineExceeded).
func (c *Cluster) syncJob(ctx context.Context, job *batchv1.Job, pods []*corev1.Pod) error {
	if finished(job) {
		return nil
	}
	var active, succeeded, failed, ready int32
	for _, p := range pods {
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			succeeded++
		case corev1.PodFailed:
			failed++
		default:
			active++
			if podReady(p) {
				ready++
			}
		}
	}
	now := metav1.Now()
	st := job.Status.DeepCopy()
	if st.StartTime == nil && (job.Spec.Suspend == nil || !*job.Spec.Suspend) {
		st.StartTime = &now
	}
	limit := int32(6)
	if job.Spec.BackoffLimit != nil {
		limit = *job.Spec.BackoffLimit
	}
	end := func(reason, message string) error {
		for _, p := range pods {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				if err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
				active--
			}
		}
		st.Conditions = append(st.Conditions,
			batchv1.JobCondition{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: reason, Message: message,
				LastProbeTime: now, LastTransitionTime: now},
			batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, Message: message,
				LastProbeTime: now, LastTransitionTime: now})
		return nil
	}
	switch {
	case succeeded > 0:
		st.Conditions = append(st.Conditions,
			batchv1.JobCondition{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached,
				Message: "Reached expected number of succeeded pods", LastProbeTime: now, LastTransitionTime: now},
			batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached,
				Message: "Reached expected number of succeeded pods", LastProbeTime: now, LastTransitionTime: now})
		st.CompletionTime = &now
	case failed > limit:
		if err := end(batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit"); err != nil {
			return err
		}
	case job.Spec.ActiveDeadlineSeconds != nil && st.StartTime != nil &&
		now.Sub(st.StartTime.Time) > time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second:
		if err := end(batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline"); err != nil {
			return err
		}
	case active == 0 && (job.Spec.Suspend == nil || !*job.Spec.Suspend):
		if err := c.createPod(ctx, job, succeeded+failed); err != nil {
			return err
		}
		active++
	}
	st.Active, st.Succeeded, st.Failed, st.Ready = active, succeeded, failed, &ready
	if apiequality.Semantic.DeepEqual(st, &job.Status) {
		return nil
	}
	j := job.DeepCopy()
	j.Status = *st
	_, err := c.client.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{})
	return err
}

func (c *Cluster) createPod(ctx context.Context, job *batchv1.Job, index int32) error {
	t := job.Spec.Template.DeepCopy()
	l := map[string]string{}
	for k, v := range t.Labels {
		l[k] = v
	}
	uid := string(job.UID)
	l[batchv1.ControllerUidLabel], l["controller-uid"] = uid, uid
	l[batchv1.JobNameLabel], l["job-name"] = job.Name, job.Name
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-" + suffix(uid, int(index)), Namespace: job.Namespace,
			Labels: l, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Spec:   t.Spec,
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	_, err := c.client.CoreV1().Pods(job.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// syncDeployment is the Deployment controller: one ReplicaSet per pod template, the
// newest revision scaled to the wanted replicas, the older ones kept until it is
// all available (maxUnavailable 0), then scaled to zero; status as the real
// controller computes it, with ProgressDeadlineExceeded when the new ReplicaSet
// makes no progress within progressDeadlineSeconds.
func (c *Cluster) syncDeployment(ctx context.Context, dep *appsv1.Deployment, sets []*appsv1.ReplicaSet) error {
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	hash := templateHash(&dep.Spec.Template)
	var cur *appsv1.ReplicaSet
	maxRev := 0
	for _, rs := range sets {
		n, _ := strconv.Atoi(rs.Annotations[revisionAnnotation])
		maxRev = max(maxRev, n)
		if rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == hash {
			cur = rs
		}
	}
	rsc := c.client.AppsV1().ReplicaSets(dep.Namespace)
	switch {
	case cur == nil:
		t := dep.Spec.Template.DeepCopy()
		if t.Labels == nil {
			t.Labels = map[string]string{}
		}
		t.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
		sel := dep.Spec.Selector.DeepCopy()
		if sel.MatchLabels == nil {
			sel.MatchLabels = map[string]string{}
		}
		sel.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-" + hash, Namespace: dep.Namespace, Labels: t.Labels,
				Annotations:     map[string]string{revisionAnnotation: strconv.Itoa(maxRev + 1)},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dep, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
			Spec: appsv1.ReplicaSetSpec{Replicas: &want, Selector: sel, Template: *t},
		}
		created, err := rsc.Create(ctx, rs, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		cur, maxRev = created, maxRev+1
		sets = append(sets, created)
	case cur.Annotations[revisionAnnotation] != strconv.Itoa(maxRev) || cur.Spec.Replicas == nil || *cur.Spec.Replicas != want:
		rs := cur.DeepCopy()
		if rs.Annotations[revisionAnnotation] != strconv.Itoa(maxRev) { // back to an older template: a new revision
			maxRev++
			rs.Annotations[revisionAnnotation] = strconv.Itoa(maxRev)
		}
		rs.Spec.Replicas = &want
		updated, err := rsc.Update(ctx, rs, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		cur = updated
	}
	if dep.Annotations[revisionAnnotation] != strconv.Itoa(maxRev) {
		d := dep.DeepCopy()
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[revisionAnnotation] = strconv.Itoa(maxRev)
		updated, err := c.client.AppsV1().Deployments(dep.Namespace).Update(ctx, d, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		dep = updated
	}
	complete := cur.Status.AvailableReplicas >= want && cur.Status.ObservedGeneration >= cur.Generation
	var total, updated, ready, available int32
	for _, rs := range sets {
		if rs.UID != cur.UID && complete && rs.Spec.Replicas != nil && *rs.Spec.Replicas > 0 {
			old := rs.DeepCopy()
			zero := int32(0)
			old.Spec.Replicas = &zero
			if _, err := rsc.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
				return err
			}
			continue
		}
		if rs.Spec.Replicas != nil {
			total += *rs.Spec.Replicas
		}
		ready += rs.Status.ReadyReplicas
		available += rs.Status.AvailableReplicas
	}
	updated = cur.Status.Replicas
	st := dep.Status.DeepCopy()
	st.ObservedGeneration = dep.Generation
	st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas = total, updated, ready, available
	st.UnavailableReplicas = max(total-available, 0)
	now := metav1.Now()
	setCondition(st, appsv1.DeploymentAvailable, available >= want, "MinimumReplicasAvailable", "Deployment has minimum availability.", now)
	progress := deploymentCondition(st, appsv1.DeploymentProgressing)
	switch {
	case complete:
		setProgress(st, corev1.ConditionTrue, "NewReplicaSetAvailable", fmt.Sprintf("ReplicaSet %q has successfully progressed.", cur.Name), now)
	case progress == nil || progress.Reason == "NewReplicaSetAvailable" || progress.Message != progressing(cur):
		setProgress(st, corev1.ConditionTrue, "ReplicaSetUpdated", progressing(cur), now)
	case progress.Status == corev1.ConditionTrue && dep.Spec.ProgressDeadlineSeconds != nil &&
		now.Sub(progress.LastUpdateTime.Time) > time.Duration(*dep.Spec.ProgressDeadlineSeconds)*time.Second:
		setProgress(st, corev1.ConditionFalse, "ProgressDeadlineExceeded", fmt.Sprintf("ReplicaSet %q has timed out progressing.", cur.Name), now)
	}
	if apiequality.Semantic.DeepEqual(st, &dep.Status) {
		return nil
	}
	d := dep.DeepCopy()
	d.Status = *st
	_, err := c.client.AppsV1().Deployments(dep.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	return err
}

// progressing is the Progressing message while cur scales up; it changes with every
// replica that becomes available, which is progress.
func progressing(cur *appsv1.ReplicaSet) string {
	return fmt.Sprintf("ReplicaSet %q is progressing: %d available.", cur.Name, cur.Status.AvailableReplicas)
}

func deploymentCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

func setProgress(st *appsv1.DeploymentStatus, status corev1.ConditionStatus, reason, msg string, now metav1.Time) {
	c := deploymentCondition(st, appsv1.DeploymentProgressing)
	if c == nil {
		st.Conditions = append(st.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing})
		c = &st.Conditions[len(st.Conditions)-1]
	}
	if c.Status == status && c.Reason == reason && c.Message == msg {
		return
	}
	if c.Status != status {
		c.LastTransitionTime = now
	}
	c.Status, c.Reason, c.Message, c.LastUpdateTime = status, reason, msg, now
}

func setCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType, ok bool, reason, msg string, now metav1.Time) {
	status := corev1.ConditionFalse
	if ok {
		status = corev1.ConditionTrue
	} else {
		reason, msg = "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
	}
	c := deploymentCondition(st, t)
	if c == nil {
		st.Conditions = append(st.Conditions, appsv1.DeploymentCondition{Type: t})
		c = &st.Conditions[len(st.Conditions)-1]
	}
	if c.Status == status {
		return
	}
	c.Status, c.Reason, c.Message, c.LastUpdateTime, c.LastTransitionTime = status, reason, msg, now, now
}

// syncReplicaSet is the ReplicaSet controller: as many pods as replicas.
func (c *Cluster) syncReplicaSet(ctx context.Context, rs *appsv1.ReplicaSet, pods []*corev1.Pod) error {
	want := int32(1)
	if rs.Spec.Replicas != nil {
		want = *rs.Spec.Replicas
	}
	names := map[string]bool{}
	var live []*corev1.Pod
	for _, p := range pods {
		names[p.Name] = true
		if p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
			live = append(live, p)
		}
	}
	pc := c.client.CoreV1().Pods(rs.Namespace)
	created := 0
	for i := 0; int32(len(live)) < want && created < maxCreatesPerPass; i++ { // #nosec G115 -- a handful of replicas
		name := rs.Name + "-" + suffix(string(rs.UID), i)
		if names[name] {
			continue
		}
		t := rs.Spec.Template.DeepCopy()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: rs.Namespace, Labels: t.Labels, Annotations: t.Annotations,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
			Spec: t.Spec, Status: corev1.PodStatus{Phase: corev1.PodPending},
		}
		if _, err := pc.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
		names[name] = true
		live = append(live, pod)
		created++
	}
	for int32(len(live)) > want { // #nosec G115 -- a handful of replicas
		p := live[len(live)-1]
		if err := pc.Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		c.kubelet.forget(p.Namespace, p.Name)
		live = live[:len(live)-1]
	}
	var ready int32
	for _, p := range live {
		if podReady(p) {
			ready++
		}
	}
	st := appsv1.ReplicaSetStatus{Replicas: int32(len(live)), FullyLabeledReplicas: int32(len(live)), // #nosec G115
		ReadyReplicas: ready, AvailableReplicas: ready, ObservedGeneration: rs.Generation}
	if apiequality.Semantic.DeepEqual(st, rs.Status) {
		return nil
	}
	r := rs.DeepCopy()
	r.Status = st
	_, err := c.client.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, r, metav1.UpdateOptions{})
	return err
}

func finished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// templateHash names a pod template, as pod-template-hash does.
func templateHash(t *corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(t)
	h := fnv.New32a()
	_, _ = h.Write(b)
	return safe(uint64(h.Sum32()), 10)
}

// suffix is a deterministic 5-character name suffix for the n-th child of uid.
func suffix(uid string, n int) string {
	h := fnv.New64a()
	_, _ = fmt.Fprintf(h, "%s/%d", uid, n)
	return safe(h.Sum64(), 5)
}

// safe spells x in the alphabet Kubernetes uses for generated names (no vowels, no
// characters that look alike).
func safe(x uint64, n int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[x%uint64(len(alphabet))]
		x /= uint64(len(alphabet))
	}
	return string(b)
}

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/podsafety"
)

// Annotations the deploy stage keeps on its Deployments.
const (
	// AnnotationStarted is when the current step (canary, rollout) began, RFC 3339.
	AnnotationStarted  = "autofix.io/step-started"
	revisionAnnotation = "deployment.kubernetes.io/revision"
)

// deploy runs the deploy stage: the new model on Canary replicas beside the stable
// Deployment first; if they become ready within the deadline, a rolling update of
// the stable Deployment; if the canary or the rollout is unhealthy, the stable
// Deployment stays on (or goes back to) its previous revision and the stage fails.
// It updates, scales and deletes only Deployments a run of this pipeline created; a
// Deployment of the same name that is not autofix's fails the stage, untouched.
func (d *Driver) deploy(ctx context.Context, def *Definition, run string, s *Stage, model string) (StageStatus, error) {
	ss := StageStatus{Name: s.Name, Phase: Running, Object: def.Name, Artifact: model}
	dc := d.Client.AppsV1().Deployments(def.Namespace)
	stable, err := d.getOwned(ctx, def, def.Name)
	if isNotOwned(err) {
		return d.refuse(ss, err), nil
	} else if err != nil {
		return ss, err
	}
	canaryName := def.Name + "-canary"
	if stable != nil {
		if rb, ok := strings.CutPrefix(stable.Annotations[AnnotationRollback], run+": "); ok {
			if !d.Observe { // a canary left by a stop between marking the stable Deployment and removing it
				if err := d.removeCanary(ctx, def, canaryName, run); err != nil {
					return ss, err
				}
			}
			ss.Phase, ss.Message = Failed, rb // this run's canary or rollout was undone
			return ss, nil
		}
	}
	if d.Observe {
		switch {
		case stable != nil && stable.Spec.Template.Annotations[LabelRun] == run && rolledOut(stable):
			ss.Phase = Succeeded
		case stable == nil:
			ss.Phase, ss.Message = Pending, "not started"
		}
		return ss, nil
	}
	want := d.serverTemplate(def, run, s, model)
	deadline := time.Duration(s.Deploy.ProgressDeadlineSeconds) * time.Second

	// Promoted already: follow the rollout.
	if stable != nil && stable.Spec.Template.Annotations[LabelRun] == run {
		switch {
		case rolledOut(stable):
			if err := d.removeCanary(ctx, def, canaryName, ""); err != nil {
				return ss, err
			}
			ss.Phase, ss.Message = Succeeded, "serving revision "+stable.Annotations[revisionAnnotation]
		case expired(stable.Annotations, deadline):
			if err := d.removeCanary(ctx, def, canaryName, ""); err != nil {
				return ss, err
			}
			msg, err := d.rollback(ctx, stable, run)
			if err != nil {
				return ss, err
			}
			ss.Phase, ss.Message = Failed, msg
		}
		return ss, nil
	}
	// A first deployment has no stable version to protect: no canary.
	if stable == nil {
		dep := d.deployment(def, def.Name, s.Deploy.Replicas, want, run, s.Deploy.ProgressDeadlineSeconds)
		// One there already (made since the read above) is looked at by the next step.
		if _, err := dc.Create(ctx, dep, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return ss, err
		}
		return ss, nil
	}
	if s.Deploy.Canary > 0 {
		ss.Object = canaryName
		canary, err := d.getOwned(ctx, def, canaryName)
		if isNotOwned(err) {
			return d.refuse(ss, err), nil
		} else if err != nil {
			return ss, err
		}
		if canary == nil {
			dep := d.deployment(def, canaryName, s.Deploy.Canary, want, run, s.Deploy.ProgressDeadlineSeconds)
			if _, err := dc.Create(ctx, dep, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return ss, err
			}
			d.log().Info("canary started", "pipeline", def.Name, "run", run, "replicas", s.Deploy.Canary)
			return ss, nil
		}
		if canary.Spec.Template.Annotations[LabelRun] != run {
			return ss, d.deleteOwned(ctx, canary) // a canary of another run of this pipeline
		}
		if !rolledOut(canary) {
			if expired(canary.Annotations, deadline) {
				msg := fmt.Sprintf("canary of run %s not healthy within %s (%s); the stable deployment stays on revision %s",
					run, deadline, unhealthy(canary), stable.Annotations[revisionAnnotation])
				// Marked first: a driver stopped in between finds the mark, and
				// removes the canary then.
				if err := d.mark(ctx, stable, run, msg); err != nil {
					return ss, err
				}
				if err := d.deleteOwned(ctx, canary); err != nil {
					return ss, err
				}
				ss.Phase, ss.Message = Failed, msg
			}
			return ss, nil
		}
	}
	// Promote: a rolling update of the stable Deployment to the new model.
	stable = stable.DeepCopy()
	for k, v := range stable.Spec.Selector.MatchLabels { // the selector is immutable: keep matching it
		want.Labels[k] = v
	}
	stable.Spec.Template = want
	stable.Spec.Replicas = &s.Deploy.Replicas
	stable.Spec.ProgressDeadlineSeconds = &s.Deploy.ProgressDeadlineSeconds
	setStarted(&stable.ObjectMeta)
	stable.Annotations[LabelRun] = run
	stable.Annotations[failure.AnnotationPipelineRun] = runID(def, run)
	// The update carries the resource version read and checked above: a Deployment
	// changed since (a person's edit) is a conflict, and the next step looks again.
	if _, err := dc.Update(ctx, stable, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return ss, err
	}
	d.log().Info("rolling out", "pipeline", def.Name, "run", run)
	return ss, nil
}

// getOwned reads the Deployment name: nil when there is none, a *NotOwnedError when
// it is not autofix's for def.
func (d *Driver) getOwned(ctx context.Context, def *Definition, name string) (*appsv1.Deployment, error) {
	dep, err := d.Client.AppsV1().Deployments(def.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := deploymentOwner(&dep.ObjectMeta, def); err != nil {
		return nil, err
	}
	if dep.Annotations == nil {
		dep.Annotations = map[string]string{}
	}
	return dep, nil
}

// deleteOwned deletes dep, which the caller read and found autofix's: only that
// object (one deleted and made again under the same name since, perhaps by a person,
// is left alone, and the next step looks again). Not only that version of it: the
// Deployment controller updates the status all the time.
func (d *Driver) deleteOwned(ctx context.Context, dep *appsv1.Deployment) error {
	uid := dep.UID
	err := d.Client.AppsV1().Deployments(dep.Namespace).Delete(ctx, dep.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// removeCanary deletes the pipeline's canary, if there is one that is autofix's (and,
// with run set, is run's). One that is not autofix's is left alone: nothing of this
// run needs its name any more.
func (d *Driver) removeCanary(ctx context.Context, def *Definition, name, run string) error {
	canary, err := d.getOwned(ctx, def, name)
	if isNotOwned(err) {
		d.log().Warn("pipeline: leaving alone a deployment autofix does not own", "pipeline", def.Name, "err", err)
		return nil
	}
	if err != nil || canary == nil || (run != "" && canary.Spec.Template.Annotations[LabelRun] != run) {
		return err
	}
	return d.deleteOwned(ctx, canary)
}

// refuse fails a stage on an object autofix does not own.
func (d *Driver) refuse(ss StageStatus, err error) StageStatus {
	if !d.Observe {
		d.log().Warn("pipeline: refusing to touch an object autofix does not own", "stage", ss.Name, "err", err)
	}
	ss.Phase, ss.Message = Failed, err.Error()
	return ss
}

func isNotOwned(err error) bool {
	var no *NotOwnedError
	return errors.As(err, &no)
}

// rollback puts the stable Deployment back on the revision before run's (what
// `kubectl rollout undo` does) and records why. The revision's pod template is
// checked against the pod policy first: autofix puts back nothing it would not create.
func (d *Driver) rollback(ctx context.Context, dep *appsv1.Deployment, run string) (string, error) {
	sets, err := d.Client.AppsV1().ReplicaSets(dep.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: metav1.FormatLabelSelector(dep.Spec.Selector)})
	if err != nil {
		return "", err
	}
	current, _ := strconv.Atoi(dep.Annotations[revisionAnnotation])
	var prev *appsv1.ReplicaSet
	best := 0
	for i := range sets.Items {
		rs := &sets.Items[i]
		if !metav1.IsControlledBy(rs, dep) {
			continue // a canary's, or someone else's
		}
		n, _ := strconv.Atoi(rs.Annotations[revisionAnnotation])
		if n < current && n > best {
			prev, best = rs, n
		}
	}
	why := unhealthy(dep)
	if prev == nil {
		return fmt.Sprintf("rollout of run %s unhealthy (%s); no previous revision to go back to", run, why), nil
	}
	if err := podsafety.CheckTemplate(&prev.Spec.Template, "replicaset "+prev.Name+" spec.template", d.Pods); err != nil {
		return fmt.Sprintf("rollout of run %s unhealthy (%s); not rolled back to revision %d: the pod policy refuses its template: %v",
			run, why, best, err), nil
	}
	back := dep.DeepCopy()
	back.Spec.Template = *prev.Spec.Template.DeepCopy()
	delete(back.Spec.Template.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	msg := fmt.Sprintf("rollout of run %s unhealthy (%s); rolled back to revision %d", run, why, best)
	back.Annotations[AnnotationRollback] = run + ": " + msg
	back.Annotations[LabelRun] = back.Spec.Template.Annotations[LabelRun]
	if _, err := d.Client.AppsV1().Deployments(dep.Namespace).Update(ctx, back, metav1.UpdateOptions{}); err != nil {
		return "", err
	}
	d.log().Warn("rolled back", "deployment", dep.Name, "to", best, "why", why)
	return msg, nil
}

// mark records a failed canary of run on the stable Deployment (read and checked in
// this step), so that a restarted driver reports the same.
func (d *Driver) mark(ctx context.Context, stable *appsv1.Deployment, run, msg string) error {
	stable = stable.DeepCopy()
	stable.Annotations[AnnotationRollback] = run + ": " + msg
	_, err := d.Client.AppsV1().Deployments(stable.Namespace).Update(ctx, stable, metav1.UpdateOptions{})
	return err
}

func (d *Driver) serverTemplate(def *Definition, run string, s *Stage, model string) corev1.PodTemplateSpec {
	t := *s.Deploy.Template.DeepCopy()
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	t.Labels["app.kubernetes.io/name"] = def.Name
	if t.Annotations == nil {
		t.Annotations = map[string]string{}
	}
	t.Annotations[LabelRun] = run
	c := &t.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: "MODEL_URI", Value: model})
	return t
}

func (d *Driver) deployment(def *Definition, name string, replicas int32, tmpl corev1.PodTemplateSpec, run string, deadline int32) *appsv1.Deployment {
	sel := map[string]string{"app.kubernetes.io/name": def.Name, "autofix.io/track": "stable"}
	if name != def.Name {
		sel["autofix.io/track"] = "canary"
	}
	labels := ownedLabels(def, "deploy")
	labels[failure.LabelKind] = "deployment"
	tmpl = *tmpl.DeepCopy()
	for k, v := range sel {
		tmpl.Labels[k] = v
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: def.Namespace, Labels: labels,
			Annotations: map[string]string{LabelRun: run, failure.AnnotationPipelineRun: runID(def, run)}},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: sel}, Template: tmpl,
			ProgressDeadlineSeconds: &deadline,
			Strategy:                appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType}},
	}
	setStarted(&dep.ObjectMeta)
	return dep
}

func setStarted(m *metav1.ObjectMeta) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[AnnotationStarted] = time.Now().UTC().Format(time.RFC3339)
}

func expired(ann map[string]string, deadline time.Duration) bool {
	t, err := time.Parse(time.RFC3339, ann[AnnotationStarted])
	return err == nil && time.Since(t) > deadline
}

// rolledOut reports whether every replica runs the current template and is available.
func rolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.UnavailableReplicas == 0
}

func unhealthy(d *appsv1.Deployment) string {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse {
			return c.Reason + ": " + c.Message
		}
	}
	return fmt.Sprintf("%d of %d replicas available", d.Status.AvailableReplicas, max(ptrOr(d.Spec.Replicas), 1))
}

func ptrOr(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

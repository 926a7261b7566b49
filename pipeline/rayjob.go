package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/autofix/autofix/podsafety"
	"github.com/autofix/autofix/policy"
)

// RayJobGVR is KubeRay's RayJob, which a RayJob stage runs.
var RayJobGVR = schema.GroupVersionResource{Group: "ray.io", Version: "v1", Resource: "rayjobs"}

// rayMaxName is the longest name KubeRay accepts for a RayJob (it names the
// RayCluster after it, with a suffix).
const rayMaxName = 47

// podTemplateAt is a pod template inside an unstructured spec: where it is (the
// field's path from the spec, for errors) and its value.
type podTemplateAt struct {
	field string
	path  []string // to the template's map, or to the slice holding it (index >= 0)
	index int
	tmpl  corev1.PodTemplateSpec
}

// rayTemplates are the pod templates of a RayJob spec: the head's, each worker
// group's, and the submitter's if the spec has one.
func rayTemplates(spec map[string]any) ([]podTemplateAt, error) {
	var out []podTemplateAt
	// read reads obj[key], at field (path and index as podTemplateAt's).
	read := func(field string, obj map[string]any, key string, path []string, index int, required bool) error {
		m, found, err := unstructured.NestedMap(obj, key)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		if !found {
			if required {
				return fmt.Errorf("%s: required", field)
			}
			return nil
		}
		at := podTemplateAt{field: field, path: path, index: index}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &at.tmpl); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		if len(at.tmpl.Spec.Containers) == 0 {
			return fmt.Errorf("%s.spec.containers: at least one", field)
		}
		out = append(out, at)
		return nil
	}
	head, found, err := unstructured.NestedMap(spec, "rayClusterSpec", "headGroupSpec")
	if err != nil || !found {
		return nil, errors.New("rayClusterSpec.headGroupSpec: required (a stage's RayJob creates its own cluster)")
	}
	if err := read("rayClusterSpec.headGroupSpec.template", head, "template", []string{"rayClusterSpec", "headGroupSpec", "template"}, -1, true); err != nil {
		return nil, err
	}
	workers, _, err := unstructured.NestedSlice(spec, "rayClusterSpec", "workerGroupSpecs")
	if err != nil {
		return nil, fmt.Errorf("rayClusterSpec.workerGroupSpecs: %w", err)
	}
	for i, w := range workers {
		field := fmt.Sprintf("rayClusterSpec.workerGroupSpecs[%d]", i)
		group, ok := w.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want an object", field)
		}
		if name, _, _ := unstructured.NestedString(group, "groupName"); !nameRE.MatchString(name) {
			return nil, fmt.Errorf("%s.groupName: %q, want a DNS label", field, name)
		}
		if err := read(field+".template", group, "template", []string{"rayClusterSpec", "workerGroupSpecs"}, i, true); err != nil {
			return nil, err
		}
	}
	if err := read("submitterPodTemplate", spec, "submitterPodTemplate", []string{"submitterPodTemplate"}, -1, false); err != nil {
		return nil, err
	}
	return out, nil
}

// checkRayAutoscaler holds to the pod policy the autoscaler sidecar KubeRay adds to
// the head's pod from spec.rayClusterSpec.autoscalerOptions (at field), as the
// RayJob adapter holds a fix's.
func checkRayAutoscaler(spec map[string]any, field string, p policy.Pods) error {
	m, found, err := unstructured.NestedMap(spec, "rayClusterSpec", "autoscalerOptions")
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", field, err)
	case !found:
		return nil
	}
	var c corev1.Container
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &c); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	ps := corev1.PodSpec{Containers: []corev1.Container{{Name: "autoscaler", SecurityContext: c.SecurityContext, Env: c.Env,
		EnvFrom: c.EnvFrom, VolumeMounts: c.VolumeMounts}}}
	return podsafety.Check(&ps, field, p)
}

// validateRayJob checks a RayJob stage's spec (field: the stage's field).
func validateRayJob(spec map[string]any, field string) error {
	if e, _, _ := unstructured.NestedString(spec, "entrypoint"); e == "" {
		return fmt.Errorf("%s.entrypoint: required", field)
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(spec, "clusterSelector"); found {
		return fmt.Errorf("%s.clusterSelector: a stage's RayJob creates its own cluster (autofix does not fix a RayJob on a cluster it did not create)", field)
	}
	if _, err := rayTemplates(spec); err != nil {
		return fmt.Errorf("%s.%w", field, err)
	}
	return nil
}

// newRayJob is the RayJob of stage s of run: its spec with the stage's artifacts on
// the first container of every pod template, and the stage's labels and
// annotations.
func (d *Driver) newRayJob(def *Definition, run string, s *Stage, input string) (*unstructured.Unstructured, error) {
	spec := runtime.DeepCopyJSON(s.RayJob)
	templates, err := rayTemplates(spec)
	if err != nil {
		return nil, err
	}
	for _, at := range templates {
		withArtifacts(&at.tmpl.Spec.Containers[0], def, run, s, input)
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&at.tmpl)
		if err != nil {
			return nil, err
		}
		if at.index < 0 {
			err = unstructured.SetNestedMap(spec, m, at.path...)
		} else {
			err = setTemplateAt(spec, at.path, at.index, m)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at.field, err)
		}
	}
	l, ann, err := stageMeta(def, run, s)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "ray.io/v1", "kind": "RayJob", "spec": spec}}
	u.SetName(jobName(def, run, s))
	u.SetNamespace(def.Namespace)
	u.SetLabels(l)
	u.SetAnnotations(ann)
	return u, nil
}

// setTemplateAt sets the template of the index-th object of the slice at path.
func setTemplateAt(obj map[string]any, path []string, index int, tmpl map[string]any) error {
	items, _, err := unstructured.NestedSlice(obj, path...)
	if err != nil {
		return err
	}
	item, ok := items[index].(map[string]any)
	if !ok {
		return errors.New("want an object")
	}
	item["template"] = tmpl
	items[index] = item
	return unstructured.SetNestedSlice(obj, items, path...)
}

// rayJobStage runs a RayJob stage (runStage); its attempts are new RayJobs.
func (d *Driver) rayJobStage(ctx context.Context, def *Definition, run string, s *Stage, input string) (StageStatus, error) {
	if d.RayJobs == nil { // observing only: Step refuses to run it so
		return StageStatus{Name: s.Name, Phase: Pending, Artifact: artifact(def, run, s.Name),
			Message: "RayJobs are not read: kubernetes.kinds does not name RayJob"}, nil
	}
	return runStage(ctx, d, def, run, s, unstructuredWorkloads(d.RayJobs.Namespace(def.Namespace), "rayjob",
		func() (*unstructured.Unstructured, error) { return d.newRayJob(def, run, s, input) },
		func(u *unstructured.Unstructured) (succeeded, failed bool) {
			deployment, _, _ := unstructured.NestedString(u.Object, "status", "jobDeploymentStatus")
			job, _, _ := unstructured.NestedString(u.Object, "status", "jobStatus")
			return deployment == "Complete" && job == "SUCCEEDED", deployment == "Failed" || deployment == "Complete" && job != "SUCCEEDED"
		}))
}

// rayJobName checks that stage s's RayJob of run, and its attempts, have names
// KubeRay accepts.
func rayJobName(def *Definition, run string, s *Stage) error {
	longest := jobName(def, run, s) + "-af" + strconv.Itoa(s.MaxAttempts)
	if len(longest) > rayMaxName {
		return fmt.Errorf("the RayJob's attempts would be named up to %q, %d characters; KubeRay accepts %d: shorten the pipeline, run or stage name",
			longest, len(longest), rayMaxName)
	}
	return nil
}

// unstructuredWorkloads are the workloads of a custom resource read through rc,
// built by build, whose end ended reads from their status.
func unstructuredWorkloads(rc dynamic.ResourceInterface, kind string, build func() (*unstructured.Unstructured, error),
	ended func(*unstructured.Unstructured) (succeeded, failed bool)) workloads[*unstructured.Unstructured] {
	return workloads[*unstructured.Unstructured]{
		kind: kind,
		list: func(ctx context.Context, selector string) ([]*unstructured.Unstructured, error) {
			l, err := rc.List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return nil, err
			}
			return pointers(l.Items), nil
		},
		get: func(ctx context.Context, name string) (*unstructured.Unstructured, error) {
			return rc.Get(ctx, name, metav1.GetOptions{})
		},
		create: func(ctx context.Context, u *unstructured.Unstructured) error {
			_, err := rc.Create(ctx, u, metav1.CreateOptions{})
			return err
		},
		build:     build,
		succeeded: func(u *unstructured.Unstructured) bool { ok, _ := ended(u); return ok },
		failed:    func(u *unstructured.Unstructured) bool { _, failed := ended(u); return failed },
	}
}

package remediate

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/autofix/autofix/failure"
)

// Binding says how one parameter reaches the container: an environment variable, or
// a command-line flag in the container's args ("--flag=value" or "--flag value").
type Binding struct {
	Env string `json:"env,omitempty"`
	Arg string `json:"arg,omitempty"`
}

// mainContainer is the container autofix sizes: the one the Job names in its
// annotation, or the first.
func mainContainer(spec *corev1.PodSpec, annotations map[string]string) (*corev1.Container, error) {
	if len(spec.Containers) == 0 {
		return nil, fmt.Errorf("pod template has no containers")
	}
	name := annotations[failure.AnnotationContainer]
	if name == "" {
		return &spec.Containers[0], nil
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i], nil
		}
	}
	return nil, fmt.Errorf("annotation %s names container %q, which the pod template does not have", failure.AnnotationContainer, name)
}

// bindings reads the Job's parameter bindings.
func bindings(annotations map[string]string) (map[string]Binding, error) {
	out := map[string]Binding{}
	if raw := annotations[failure.AnnotationParams]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &out); err != nil {
			return nil, fmt.Errorf("annotation %s: %w", failure.AnnotationParams, err)
		}
	}
	return out, nil
}

// tunables reads the Job's declared tunables.
func tunables(annotations map[string]string) (map[string]failure.Tunable, error) {
	raw := annotations[failure.AnnotationTunables]
	if raw == "" {
		return nil, nil
	}
	var out map[string]failure.Tunable
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", failure.AnnotationTunables, err)
	}
	return out, nil
}

// resourcesOf is what container c asks for: its limits, or its requests where it
// sets no limit.
func resourcesOf(c *corev1.Container, gpuTypeLabel string, spec *corev1.PodSpec) failure.Resources {
	get := func(name corev1.ResourceName) (resource.Quantity, bool) {
		if q, ok := c.Resources.Limits[name]; ok {
			return q, true
		}
		q, ok := c.Resources.Requests[name]
		return q, ok
	}
	var r failure.Resources
	if q, ok := get(corev1.ResourceCPU); ok {
		r.CPUMillis = q.MilliValue()
	}
	if q, ok := get(corev1.ResourceMemory); ok {
		r.MemoryBytes = q.Value()
	}
	if q, ok := get(corev1.ResourceEphemeralStorage); ok {
		r.EphemeralStorageBytes = q.Value()
	}
	if q, ok := get(ResourceGPU); ok {
		r.GPU = int(q.Value())
	}
	r.GPUType = spec.NodeSelector[gpuTypeLabel]
	return r
}

// paramsOf reads the current value of every bound parameter from container c.
func paramsOf(c *corev1.Container, b map[string]Binding) map[string]string {
	out := map[string]string{}
	for name, bd := range b {
		switch {
		case bd.Env != "":
			for _, e := range c.Env {
				if e.Name == bd.Env {
					out[name] = e.Value
				}
			}
		case bd.Arg != "":
			if v, ok := argValue(c.Args, bd.Arg); ok {
				out[name] = v
			}
		}
	}
	return out
}

func argValue(args []string, flag string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// setArg sets flag to value in args, in the form it already has, or appends it.
func setArg(args []string, flag, value string) []string {
	for i, a := range args {
		if strings.HasPrefix(a, flag+"=") {
			args[i] = flag + "=" + value
			return args
		}
		if a == flag && i+1 < len(args) {
			args[i+1] = value
			return args
		}
	}
	return append(args, flag+"="+value)
}

func setEnv(env []corev1.EnvVar, name, value string) []corev1.EnvVar {
	for i := range env {
		if env[i].Name == name {
			env[i].Value, env[i].ValueFrom = value, nil
			return env
		}
	}
	return append(env, corev1.EnvVar{Name: name, Value: value})
}

// applyResources sets container c's requests and limits to r. Memory, GPUs and
// local storage get request = limit (what the job was sized for is what it may use);
// CPU gets the request, and a limit only if it had one.
func applyResources(c *corev1.Container, r failure.Resources) {
	if c.Resources.Requests == nil {
		c.Resources.Requests = corev1.ResourceList{}
	}
	if c.Resources.Limits == nil {
		c.Resources.Limits = corev1.ResourceList{}
	}
	set := func(name corev1.ResourceName, q resource.Quantity, limit bool) {
		c.Resources.Requests[name] = q
		if limit {
			c.Resources.Limits[name] = q
		}
	}
	if r.MemoryBytes > 0 {
		set(corev1.ResourceMemory, *resource.NewQuantity(r.MemoryBytes, resource.BinarySI), true)
	}
	if r.CPUMillis > 0 {
		_, hadLimit := c.Resources.Limits[corev1.ResourceCPU]
		set(corev1.ResourceCPU, *resource.NewMilliQuantity(r.CPUMillis, resource.DecimalSI), hadLimit)
	}
	if r.EphemeralStorageBytes > 0 {
		set(corev1.ResourceEphemeralStorage, *resource.NewQuantity(r.EphemeralStorageBytes, resource.BinarySI), true)
	}
	if r.GPU > 0 {
		set(ResourceGPU, *resource.NewQuantity(int64(r.GPU), resource.DecimalSI), true)
	}
}

// avoidNodes adds a required node affinity that keeps the pods off nodes.
func avoidNodes(spec *corev1.PodSpec, nodes []string) {
	if len(nodes) == 0 {
		return
	}
	nodes = append([]string(nil), nodes...)
	sort.Strings(nodes)
	req := corev1.NodeSelectorRequirement{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpNotIn, Values: nodes}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{}},
		}
	}
	// Terms are ORed, requirements within a term ANDed: the requirement goes in every term.
	terms := na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for i := range terms {
		terms[i].MatchExpressions = append(terms[i].MatchExpressions, req)
	}
}

// attemptOf reads a Job's attempt number (1 for a Job autofix did not create).
func attemptOf(job *batchv1.Job) int { return attemptOfLabels(job.Labels) }

// attemptOfLabels reads the attempt number of a workload labelled l (1 for one
// autofix did not create).
func attemptOfLabels(l map[string]string) int {
	if n, err := strconv.Atoi(l[failure.LabelAttempt]); err == nil && n > 0 {
		return n
	}
	return 1
}

package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/podsafety"
	"github.com/autofix/autofix/policy"
	"github.com/autofix/autofix/remediate"
)

// Definition is a pipeline as written in YAML.
type Definition struct {
	Name      string `yaml:"name" json:"name"`
	Namespace string `yaml:"namespace" json:"namespace"`
	// Artifacts is the base URI stages write under: <artifacts>/<run>/<stage>.
	Artifacts string  `yaml:"artifacts" json:"artifacts"`
	Stages    []Stage `yaml:"stages" json:"stages"`
}

// Stage is one step. A Job stage (train, compress) has Job, a JobSet stage (a
// distributed run) JobSet; the deploy stage has Deploy.
type Stage struct {
	Name string          `yaml:"name" json:"name"`
	Kind failure.JobKind `yaml:"kind" json:"kind"`
	// Tunables and Params are what remediation may change and how they reach the
	// container (see the autofix.io/tunables and autofix.io/params annotations).
	Tunables map[string]failure.Tunable   `yaml:"tunables,omitempty" json:"tunables,omitempty"`
	Params   map[string]map[string]string `yaml:"params,omitempty" json:"params,omitempty"`
	// MaxAttempts is the stage's retry policy: the most runs of its Job (default 3).
	MaxAttempts int `yaml:"maxAttempts,omitempty" json:"maxAttempts,omitempty"`
	// Job is the pod template of a Job stage. The driver adds the environment
	// variables ARTIFACT_IN (the previous stage's output) and ARTIFACT_OUT.
	Job *corev1.PodTemplateSpec `yaml:"job,omitempty" json:"job,omitempty"`
	// JobSet is the spec of a JobSet stage (jobset.x-k8s.io/v1alpha2), run when
	// kubernetes.kinds names JobSet. The driver adds ARTIFACT_IN and ARTIFACT_OUT to
	// the first container of every replicated job, and makes a pod's failure fail
	// its Job (backoffLimit 0 where unset): remediation decides what runs next.
	JobSet *jobsetapi.JobSetSpec `yaml:"jobset,omitempty" json:"jobset,omitempty"`
	// RayJob is the spec of a RayJob stage (ray.io/v1, as KubeRay's RayJob spec is
	// written), run when kubernetes.kinds names RayJob. It creates its own cluster
	// (rayClusterSpec; no clusterSelector). The driver adds ARTIFACT_IN and
	// ARTIFACT_OUT to the first container of the head, of every worker group and of
	// the submitter.
	RayJob map[string]any `yaml:"rayjob,omitempty" json:"rayjob,omitempty"`
	// Workflow is the spec of an Argo Workflow stage (argoproj.io/v1alpha1, its
	// templates written in full), run when kubernetes.kinds names Workflow. The
	// driver adds ARTIFACT_IN and ARTIFACT_OUT to every container and script
	// template.
	Workflow map[string]any `yaml:"workflow,omitempty" json:"workflow,omitempty"`
	// Deploy is the deploy stage.
	Deploy *Deploy `yaml:"deploy,omitempty" json:"deploy,omitempty"`
}

// Deploy is a rolling update of an inference server, canary first.
type Deploy struct {
	Replicas int32 `yaml:"replicas" json:"replicas"`
	// Canary is how many replicas run the new model first, beside the stable ones.
	Canary int32 `yaml:"canary" json:"canary"`
	// ProgressDeadlineSeconds bounds each step (canary ready, rollout complete).
	ProgressDeadlineSeconds int32 `yaml:"progressDeadlineSeconds" json:"progressDeadlineSeconds"`
	// Template is the server's pod template; the driver sets MODEL_URI to the
	// previous stage's output.
	Template corev1.PodTemplateSpec `yaml:"template" json:"template"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Parse reads a pipeline definition. Pod templates are Kubernetes objects: they are
// decoded with Kubernetes' own JSON rules (field names as in a manifest), strictly.
func Parse(data []byte) (*Definition, error) {
	var raw any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	js, err := jsonOf(raw)
	if err != nil {
		return nil, err
	}
	var d Definition
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	return &d, d.Validate()
}

// Validate reports the first problem, naming the field.
func (d *Definition) Validate() error {
	switch {
	case !nameRE.MatchString(d.Name) || len(d.Name) > 30:
		return fmt.Errorf("name: %q, want a DNS label of at most 30 characters", d.Name)
	case d.Namespace == "":
		return errors.New("namespace: required")
	case d.Artifacts == "":
		return errors.New("artifacts: required (the base URI stages write under)")
	case len(d.Stages) == 0:
		return errors.New("stages: at least one")
	}
	seen := map[string]bool{}
	for i := range d.Stages {
		s := &d.Stages[i]
		f := fmt.Sprintf("stages[%d]", i)
		switch {
		case !nameRE.MatchString(s.Name) || len(s.Name) > 12:
			return fmt.Errorf("%s.name: %q, want a DNS label of at most 12 characters", f, s.Name)
		case seen[s.Name]:
			return fmt.Errorf("%s.name: %q twice", f, s.Name)
		case count(s.Job != nil, s.JobSet != nil, s.RayJob != nil, s.Workflow != nil, s.Deploy != nil) != 1:
			return fmt.Errorf("%s: want exactly one of job, jobset, rayjob, workflow and deploy", f)
		case s.Deploy != nil && i != len(d.Stages)-1:
			return fmt.Errorf("%s.deploy: only the last stage may deploy", f)
		case s.Job != nil && len(s.Job.Spec.Containers) == 0:
			return fmt.Errorf("%s.job.spec.containers: at least one", f)
		case s.JobSet != nil && len(s.JobSet.ReplicatedJobs) == 0:
			return fmt.Errorf("%s.jobset.replicatedJobs: at least one", f)
		case s.Deploy != nil && len(s.Deploy.Template.Spec.Containers) == 0:
			return fmt.Errorf("%s.deploy.template.spec.containers: at least one", f)
		case s.Deploy != nil && (s.Deploy.Replicas < 1 || s.Deploy.Canary < 0 || s.Deploy.Canary > s.Deploy.Replicas):
			return fmt.Errorf("%s.deploy: replicas %d, canary %d; want replicas >= 1 and 0 <= canary <= replicas", f, s.Deploy.Replicas, s.Deploy.Canary)
		case s.MaxAttempts < 0:
			return fmt.Errorf("%s.maxAttempts: %d, want positive", f, s.MaxAttempts)
		}
		if s.JobSet != nil {
			for j, rj := range s.JobSet.ReplicatedJobs {
				switch {
				case !nameRE.MatchString(rj.Name):
					return fmt.Errorf("%s.jobset.replicatedJobs[%d].name: %q, want a DNS label", f, j, rj.Name)
				case len(rj.Template.Spec.Template.Spec.Containers) == 0:
					return fmt.Errorf("%s.jobset.replicatedJobs[%d].template.spec.template.spec.containers: at least one", f, j)
				case d.Name[0] < 'a' || d.Name[0] > 'z':
					return fmt.Errorf("name: %q, want it to start with a letter: the JobSet webhook refuses Job names that do not (%s)", d.Name, f)
				case jobSetNameLen(d, s, &rj) > 63:
					return fmt.Errorf("%s.jobset.replicatedJobs[%d].name: %q, its Jobs' names <pipeline>-<run>-<stage>-af<n>-%s-<index> may be %d characters, over the 63 the JobSet webhook accepts: shorten the pipeline's, the stage's or its name",
						f, j, rj.Name, rj.Name, jobSetNameLen(d, s, &rj))
				}
			}
		}
		if s.RayJob != nil {
			if err := validateRayJob(s.RayJob, f+".rayjob"); err != nil {
				return err
			}
		}
		if s.Workflow != nil {
			if err := validateWorkflow(s.Workflow, f+".workflow"); err != nil {
				return err
			}
		}
		if s.Kind == "" {
			s.Kind = failure.Batch
		}
		if s.MaxAttempts == 0 {
			s.MaxAttempts = 3
		}
		if s.Deploy != nil && s.Deploy.ProgressDeadlineSeconds == 0 {
			s.Deploy.ProgressDeadlineSeconds = 300
		}
		seen[s.Name] = true
	}
	return nil
}

// CheckPods reports the first stage whose pod template the policy's pod-safety
// switches refuse, naming each refused field by its path in the definition (e.g.
// "stages[2].deploy.template.spec.containers[0].securityContext.privileged"). The
// service and the driver check every definition with it before creating anything.
func (d *Definition) CheckPods(p policy.Pods) error {
	for i := range d.Stages {
		if err := d.Stages[i].checkPods(i, p); err != nil {
			return err
		}
	}
	return nil
}

// checkPods checks stage i's pod template.
func (s *Stage) checkPods(i int, p policy.Pods) error {
	switch {
	case s.Job != nil:
		return podsafety.CheckTemplate(s.Job, fmt.Sprintf("stages[%d].job", i), p)
	case s.Workflow != nil:
		return remediate.CheckWorkflowSpec(s.Workflow, fmt.Sprintf("stages[%d].workflow", i), p)
	case s.RayJob != nil:
		templates, err := rayTemplates(s.RayJob)
		if err != nil {
			return fmt.Errorf("stages[%d].rayjob.%w", i, err)
		}
		for _, at := range templates {
			if err := podsafety.CheckTemplate(&at.tmpl, fmt.Sprintf("stages[%d].rayjob.%s", i, at.field), p); err != nil {
				return err
			}
		}
		if err := checkRayAutoscaler(s.RayJob, fmt.Sprintf("stages[%d].rayjob.rayClusterSpec.autoscalerOptions", i), p); err != nil {
			return err
		}
	case s.JobSet != nil:
		for j := range s.JobSet.ReplicatedJobs {
			field := fmt.Sprintf("stages[%d].jobset.replicatedJobs[%d].template.spec.template", i, j)
			if err := podsafety.CheckTemplate(&s.JobSet.ReplicatedJobs[j].Template.Spec.Template, field, p); err != nil {
				return err
			}
		}
	case s.Deploy != nil:
		return podsafety.CheckTemplate(&s.Deploy.Template, fmt.Sprintf("stages[%d].deploy.template", i), p)
	}
	return nil
}

// count is how many of conds hold.
func count(conds ...bool) int {
	n := 0
	for _, c := range conds {
		if c {
			n++
		}
	}
	return n
}

// jsonOf turns YAML-decoded data into JSON (map keys are strings in YAML 1.2 maps).
func jsonOf(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	return buf.Bytes(), nil
}

// maxRunLen is the longest run name the API accepts (api.runRE).
const maxRunLen = 20

// jobSetNameLen is the longest name a Job (or, for an indexed Job, a pod) of
// replicated job rj of JobSet stage s may get: the JobSet is named
// <pipeline>-<run>-<stage>, its attempts add -af<n> (two digits assumed), and the
// JobSet controller names its Jobs <jobset>-<rj>-<index> and an indexed Job's pods
// <job>-<index>-<5 random characters>, as its webhook checks them.
func jobSetNameLen(d *Definition, s *Stage, rj *jobsetapi.ReplicatedJob) int {
	n := len(d.Name) + 1 + maxRunLen + 1 + len(s.Name) + len("-af99") + 1 + len(rj.Name) + 1 + len(strconv.Itoa(max(0, int(rj.Replicas)-1)))
	t := rj.Template.Spec
	if t.CompletionMode != nil && *t.CompletionMode == batchv1.IndexedCompletion && t.Completions != nil {
		n += 1 + len(strconv.Itoa(max(0, int(*t.Completions)-1))) + len("-abcde")
	}
	return n
}

// Package deploy_test checks the kustomize manifests in deploy/ without a cluster:
// that the base is safe as shipped (API tokens from the Secret, no namespace watched
// until an overlay names them, least-privilege RBAC) and that the example overlay
// names its namespaces and binds autofix's roles in exactly those. The integration
// test TestIntegrationKubernetes applies the overlay with a server-side dry run.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/podsafety"
	"github.com/autofix/autofix/policy"
)

// placeholder is the base's kubernetes.namespaces: not a namespace name, so that it
// can never match a real one.
const placeholder = "SET-ME:namespaces-to-watch"

// object is one manifest: its kind and name, and the document as JSON.
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	raw []byte
}

// objects reads every document of the YAML files.
func objects(t *testing.T, files ...string) []object {
	t.Helper()
	var out []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if doc == nil {
				continue
			}
			js, err := json.Marshal(doc)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			o := object{raw: js}
			if err := json.Unmarshal(js, &o); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, o)
		}
	}
	return out
}

func (o object) decode(t *testing.T, into any) {
	t.Helper()
	if err := json.Unmarshal(o.raw, into); err != nil {
		t.Fatalf("%s %s: %v", o.Kind, o.Metadata.Name, err)
	}
}

// kustomization is what these tests read of a kustomization.yaml.
type kustomization struct {
	Namespace          string   `yaml:"namespace"`
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name     string   `yaml:"name"`
		Behavior string   `yaml:"behavior"`
		Files    []string `yaml:"files"`
	} `yaml:"configMapGenerator"`
}

func readKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	return k
}

// configOf loads the config file the kustomization's "autofix" ConfigMap is made
// from, with the environment the Deployment gives serve.
func configOf(t *testing.T, dir string, k kustomization, behavior string) config.Config {
	t.Helper()
	for _, g := range k.ConfigMapGenerator {
		if g.Name == "autofix" && g.Behavior == behavior && slices.Equal(g.Files, []string{"autofix.yaml"}) {
			env := map[string]string{"AUTOFIX_DB": "postgres://autofix@db:5432/autofix", "AUTOFIX_IDENTITY": "autofix-0"}
			c, err := config.Load(filepath.Join(dir, "autofix.yaml"), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err != nil {
				t.Fatalf("%s/autofix.yaml: %v", dir, err)
			}
			return c
		}
	}
	t.Fatalf("%s/kustomization.yaml: no configMapGenerator autofix (behavior %q) from autofix.yaml", dir, behavior)
	return config.Config{}
}

func TestBaseIsSafeAsShipped(t *testing.T) {
	k := readKustomization(t, "base")
	c := configOf(t, "base", k, "")
	if want := k.Namespace + "/autofix-tokens"; c.HTTP.TokensSecret != want {
		t.Errorf("http.tokensSecret = %q, want %q: without it each pod makes its own admin token", c.HTTP.TokensSecret, want)
	}
	if !slices.Equal(c.Kubernetes.Namespaces, []string{placeholder}) {
		t.Errorf("kubernetes.namespaces = %q, want the placeholder [%q]: empty watches every namespace", c.Kubernetes.Namespaces, placeholder)
	}
	if c.Kubernetes.LeaseNamespace != k.Namespace {
		t.Errorf("kubernetes.leaseNamespace = %q, want the base's namespace %q", c.Kubernetes.LeaseNamespace, k.Namespace)
	}
	var files []string
	for _, r := range k.Resources {
		files = append(files, filepath.Join("base", r))
	}
	objs := objects(t, files...)
	checkRBAC(t, objs, c)
	for _, o := range objs {
		if o.Kind != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		o.decode(t, &d)
		if err := podsafety.Check(&d.Spec.Template.Spec, "deployment "+d.Name+" spec.template.spec", policy.Pods{}); err != nil {
			t.Errorf("autofix's own pod is refused by its default pod policy: %v", err)
		}
		if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("deployment %s: want runAsNonRoot", d.Name)
		}
		if d.Spec.Replicas != nil && *d.Spec.Replicas > 1 && !sessionKeysFromSecret(&d, c.HTTP.SessionKeyFile) {
			t.Errorf("deployment %s: %d replicas, and http.sessionKeyFile %q is not in a mounted Secret: a review-page login "+
				"on one pod would be unknown to the others", d.Name, *d.Spec.Replicas, c.HTTP.SessionKeyFile)
		}
	}
}

// sessionKeysFromSecret reports whether file is in a directory where the Deployment
// mounts a Secret.
func sessionKeysFromSecret(d *appsv1.Deployment, file string) bool {
	if file == "" {
		return false
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, m := range c.VolumeMounts {
				if m.Name == v.Name && filepath.Dir(file) == filepath.Clean(m.MountPath) {
					return true
				}
			}
		}
	}
	return false
}

// checkRBAC holds the base's RBAC to least privilege: no wildcards, nothing bound
// cluster-wide but listing nodes, the Secret and the Lease it may read named.
func checkRBAC(t *testing.T, objs []object, c config.Config) {
	t.Helper()
	_, tokens, _ := strings.Cut(c.HTTP.TokensSecret, "/")
	var sawSecret, sawLease bool
	for _, o := range objs {
		var rules []rbacv1.PolicyRule
		switch o.Kind {
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			o.decode(t, &b)
			if b.RoleRef.Name != "autofix-nodes" {
				t.Errorf("ClusterRoleBinding %s binds %s cluster-wide; only autofix-nodes may be", b.Name, b.RoleRef.Name)
			}
		case "ClusterRole":
			var r rbacv1.ClusterRole
			o.decode(t, &r)
			rules = r.Rules
		case "Role":
			var r rbacv1.Role
			o.decode(t, &r)
			rules = r.Rules
		}
		for i, r := range rules {
			if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
				t.Errorf("%s %s rules[%d]: a wildcard", o.Kind, o.Metadata.Name, i)
			}
			for _, res := range r.Resources {
				switch {
				case res == "secrets":
					sawSecret = true
					if !slices.Equal(r.ResourceNames, []string{tokens}) || !slices.Equal(r.Verbs, []string{"get"}) {
						t.Errorf("%s %s rules[%d]: secrets %v of %v, want get of %q only", o.Kind, o.Metadata.Name, i, r.Verbs, r.ResourceNames, tokens)
					}
				case res == "leases" && !slices.Equal(r.Verbs, []string{"create"}):
					sawLease = true
					if !slices.Equal(r.ResourceNames, []string{c.Kubernetes.LeaseName}) {
						t.Errorf("%s %s rules[%d]: leases %v of %v, want only %q", o.Kind, o.Metadata.Name, i, r.Verbs, r.ResourceNames, c.Kubernetes.LeaseName)
					}
				case o.Kind == "ClusterRole" && o.Metadata.Name == "autofix-nodes" && (res != "nodes" || !slices.Equal(r.Verbs, []string{"list", "watch"})):
					t.Errorf("ClusterRole autofix-nodes rules[%d]: %v of %s; want list and watch of nodes only", i, r.Verbs, res)
				case o.Kind == "ClusterRole" && o.Metadata.Name == "autofix-jobsets" && (res != "jobsets" ||
					!slices.Equal(r.APIGroups, []string{"jobset.x-k8s.io"}) || !slices.Equal(r.Verbs, []string{"get", "list", "watch", "create"})):
					t.Errorf("ClusterRole autofix-jobsets rules[%d]: %v of %v %s; want get, list, watch and create of jobset.x-k8s.io jobsets only",
						i, r.Verbs, r.APIGroups, res)
				case o.Metadata.Name == "autofix-kueue" && !slices.Equal(r.APIGroups, []string{"kueue.x-k8s.io"}),
					o.Metadata.Name == "autofix-kueue" && res == "workloads" && !slices.Equal(r.Verbs, []string{"list"}),
					o.Metadata.Name == "autofix-kueue" && res == "localqueues" && !slices.Equal(r.Verbs, []string{"list", "watch"}),
					o.Metadata.Name == "autofix-kueue" && res != "workloads" && res != "localqueues":
					t.Errorf("%s autofix-kueue rules[%d]: %v of %v %s; want list of kueue.x-k8s.io workloads, list and watch of localqueues only",
						o.Kind, i, r.Verbs, r.APIGroups, res)
				case o.Metadata.Name == "autofix-kueue-queues" && (res != "clusterqueues" || !slices.Equal(r.APIGroups, []string{"kueue.x-k8s.io"}) ||
					!slices.Equal(r.Verbs, []string{"list", "watch"})):
					t.Errorf("%s autofix-kueue-queues rules[%d]: %v of %v %s; want list and watch of kueue.x-k8s.io clusterqueues only",
						o.Kind, i, r.Verbs, r.APIGroups, res)
				case slices.Contains(r.APIGroups, "kueue.x-k8s.io") && o.Metadata.Name != "autofix-kueue" && o.Metadata.Name != "autofix-kueue-queues":
					t.Errorf("%s %s rules[%d]: Kueue's objects outside autofix-kueue, bound only where Kueue is enabled", o.Kind, o.Metadata.Name, i)
				case o.Metadata.Name == "autofix-rayjobs" && (res != "rayjobs" || !slices.Equal(r.APIGroups, []string{"ray.io"}) ||
					!slices.Equal(r.Verbs, []string{"get", "list", "watch", "create"})):
					t.Errorf("%s autofix-rayjobs rules[%d]: %v of %v %s; want get, list, watch and create of ray.io rayjobs only", o.Kind, i, r.Verbs, r.APIGroups, res)
				case slices.Contains(r.APIGroups, "ray.io") && o.Metadata.Name != "autofix-rayjobs":
					t.Errorf("%s %s rules[%d]: KubeRay's objects outside autofix-rayjobs, bound only where RayJob is enabled", o.Kind, o.Metadata.Name, i)
				case o.Metadata.Name == "autofix-workflows" && (res != "workflows" || !slices.Equal(r.APIGroups, []string{"argoproj.io"}) ||
					!slices.Equal(r.Verbs, []string{"get", "list", "watch", "create"})):
					t.Errorf("%s autofix-workflows rules[%d]: %v of %v %s; want get, list, watch and create of argoproj.io workflows only",
						o.Kind, i, r.Verbs, r.APIGroups, res)
				case slices.Contains(r.APIGroups, "argoproj.io") && o.Metadata.Name != "autofix-workflows":
					t.Errorf("%s %s rules[%d]: Argo's objects outside autofix-workflows, bound only where Workflow is enabled", o.Kind, o.Metadata.Name, i)
				case res == "jobsets" && o.Metadata.Name != "autofix-jobsets":
					t.Errorf("%s %s rules[%d]: jobsets outside autofix-jobsets, which is bound only where JobSet is enabled", o.Kind, o.Metadata.Name, i)
				}
			}
		}
	}
	if !sawSecret || !sawLease {
		t.Errorf("no rule for the tokens Secret (%v) or the leader Lease (%v)", sawSecret, sawLease)
	}
}

func TestExampleOverlayNamesItsNamespaces(t *testing.T) {
	const dir = "overlays/example"
	k := readKustomization(t, dir)
	c := configOf(t, dir, k, "replace")
	if err := c.Validate(); err != nil {
		t.Fatalf("%s/autofix.yaml: %v", dir, err)
	}
	if c.HTTP.TokensSecret == "" {
		t.Error("http.tokensSecret: empty; want the API tokens from a Secret")
	}
	if len(c.Kubernetes.Namespaces) == 0 {
		t.Fatal("kubernetes.namespaces: empty (every namespace); want the namespaces named")
	}
	for i, ns := range c.Kubernetes.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			t.Errorf("kubernetes.namespaces[%d]: %q is not a namespace name (still the base's placeholder?)", i, ns)
		}
	}
	var files []string
	for _, r := range k.Resources {
		if strings.HasSuffix(r, ".yaml") {
			files = append(files, filepath.Join(dir, r))
		}
	}
	bound := map[string][]string{} // role -> namespaces
	for _, o := range objects(t, files...) {
		switch o.Kind {
		case "RoleBinding":
			var b rbacv1.RoleBinding
			o.decode(t, &b)
			for _, s := range b.Subjects {
				if s.Kind != "ServiceAccount" || s.Name != "autofix" || s.Namespace != c.Kubernetes.LeaseNamespace {
					t.Errorf("RoleBinding %s/%s: subject %+v, want the service account autofix/autofix", b.Namespace, b.Name, s)
				}
			}
			bound[b.RoleRef.Name] = append(bound[b.RoleRef.Name], b.Namespace)
		case "ClusterRoleBinding":
			t.Errorf("ClusterRoleBinding %s in the overlay: bind per namespace", o.Metadata.Name)
		}
	}
	watched := slices.Sorted(slices.Values(c.Kubernetes.Namespaces))
	if got := slices.Sorted(slices.Values(bound["autofix-jobs"])); !slices.Equal(got, watched) {
		t.Errorf("autofix-jobs is bound in %q, want exactly the watched namespaces %q", got, watched)
	}
	// The JobSet role goes with the kind: bound in every watched namespace when
	// kubernetes.kinds names JobSet, nowhere otherwise.
	wantJobSets := []string(nil)
	if c.Kubernetes.Enabled(config.KindJobSet) {
		wantJobSets = watched
	}
	if got := slices.Sorted(slices.Values(bound["autofix-jobsets"])); !slices.Equal(got, wantJobSets) {
		t.Errorf("autofix-jobsets is bound in %q, want %q (kubernetes.kinds %q)", got, wantJobSets, c.Kubernetes.Kinds)
	}
	wantRayJobs := []string(nil)
	if c.Kubernetes.Enabled(config.KindRayJob) {
		wantRayJobs = watched
	}
	if got := slices.Sorted(slices.Values(bound["autofix-rayjobs"])); !slices.Equal(got, wantRayJobs) {
		t.Errorf("autofix-rayjobs is bound in %q, want %q (kubernetes.kinds %q)", got, wantRayJobs, c.Kubernetes.Kinds)
	}
	wantWorkflows := []string(nil)
	if c.Kubernetes.Enabled(config.KindWorkflow) {
		wantWorkflows = watched
	}
	if got := slices.Sorted(slices.Values(bound["autofix-workflows"])); !slices.Equal(got, wantWorkflows) {
		t.Errorf("autofix-workflows is bound in %q, want %q (kubernetes.kinds %q)", got, wantWorkflows, c.Kubernetes.Kinds)
	}
	for _, ns := range bound["autofix-pipelines"] {
		if !slices.Contains(watched, ns) {
			t.Errorf("autofix-pipelines is bound in %q, which autofix does not watch", ns)
		}
	}
}

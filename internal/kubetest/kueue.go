package kubetest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/autofix/autofix/internal/testwait"
)

// Kueue's resources (kueue.x-k8s.io/v1beta2, the version it stores).
var (
	ResourceFlavorGVR = schema.GroupVersionResource{Group: "kueue.x-k8s.io", Version: "v1beta2", Resource: "resourceflavors"}
	ClusterQueueGVR   = schema.GroupVersionResource{Group: "kueue.x-k8s.io", Version: "v1beta2", Resource: "clusterqueues"}
	LocalQueueGVR     = schema.GroupVersionResource{Group: "kueue.x-k8s.io", Version: "v1beta2", Resource: "localqueues"}
	WorkloadGVR       = schema.GroupVersionResource{Group: "kueue.x-k8s.io", Version: "v1beta2", Resource: "workloads"}
)

// The Kueue integrations (frameworks) StartKueue can enable, with the API group of
// the workloads each manages.
const (
	KueueJobs    = "batch/job"
	KueueJobSets = "jobset.x-k8s.io/jobset"
)

// kueueFrameworkGroups maps each framework StartKueue can enable to its API group.
var kueueFrameworkGroups = map[string]string{KueueJobs: "batch", KueueJobSets: "jobset.x-k8s.io"}

// QueueNameLabel names a workload's LocalQueue.
const QueueNameLabel = "kueue.x-k8s.io/queue-name"

// kueueNamespace is where Kueue keeps its own objects.
const kueueNamespace = "kueue-system"

// StartKueue runs the real Kueue controller (KueueVersion) against the cluster until
// the test ends, managing the workloads of the given frameworks (KueueJobs,
// KueueJobSets; KueueJobs when none is given): it installs Kueue's CRDs from the
// module, starts kueue-controller (log kueue-controller.log in c.Dir), registers by
// URL its webhooks for Kueue's own objects and for those frameworks (scoped as in
// Kueue's release manifests: not in kube-system or kueue-system), and returns once
// its defaulting webhook answers the API server. KueueJobSets needs the JobSet CRD:
// call StartJobSet first.
//
// Kueue reads its metrics certificate from the hard-coded /etc/kueue/metrics/certs
// when its internal certificate management is off (as here: the API server calls
// the webhooks by URL, with the test's certificate), and exits without it, metrics
// off or not; no flag or setting of v0.19 changes that. As root, the controller runs
// in a private mount namespace in which /etc is an overlay holding that certificate
// (see kueueCommand): the host's /etc is not changed. Its visibility server is
// turned off (--feature-gates=VisibilityOnDemand=false), since it too would read
// certificates from a fixed path.
func (c *Cluster) StartKueue(t testwait.T, frameworks ...string) *Controller {
	t.Helper()
	if len(frameworks) == 0 {
		frameworks = []string{KueueJobs}
	}
	scope := webhookScope{"kueue.x-k8s.io": {}}
	// Workloads in kube-system and kueue-system are left alone, as Kueue's release
	// manifests do.
	notSystem := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", kueueNamespace}}}}
	for _, f := range frameworks {
		group, ok := kueueFrameworkGroups[f]
		if !ok {
			t.Fatalf("StartKueue: framework %q: kubetest runs %s", f, strings.Join(slices.Sorted(maps.Keys(kueueFrameworkGroups)), ", "))
		}
		scope[group] = selectors{namespace: notSystem}
	}
	ctx := testwait.Context(t)
	if slices.Contains(frameworks, KueueJobSets) {
		if _, err := c.Dynamic.Resource(crdGVR).Get(ctx, "jobsets.jobset.x-k8s.io", metav1.GetOptions{}); err != nil {
			t.Fatalf("StartKueue(%s): the JobSet CRD: %v (call StartJobSet first)", KueueJobSets, err)
		}
	}
	src := controllers(t)
	crds, err := filepath.Glob(filepath.Join(src.KueueSource, "config", "components", "crd", "bases", "kueue.x-k8s.io_*.yaml"))
	if err != nil || len(crds) == 0 {
		t.Fatalf("Kueue's CRDs in %s: none found (%v)", src.KueueSource, err)
	}
	c.InstallCRDs(t, crds...)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kueueNamespace}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	config, cert, port := c.controllerFiles(t, "kueue")
	quoted := make([]string, len(frameworks))
	for i, f := range frameworks {
		quoted[i] = strconv.Quote(f)
	}
	write(t, config, fmt.Sprintf(`apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: %s
leaderElection: {leaderElect: false}
internalCertManagement: {enable: false}
webhook: {host: 127.0.0.1, port: %d, certDir: %s}
metrics: {bindAddress: "0"}
health: {healthProbeBindAddress: "0"}
integrations: {frameworks: [%s]}
`, kueueNamespace, port, strconv.Quote(cert.dir), strings.Join(quoted, ", ")))
	cmd, err := kueueCommand(filepath.Dir(config), cert.dir, filepath.Join(src.Bin, "kueue-controller"),
		"--kubeconfig", c.Kubeconfig, "--config", config, "--feature-gates=VisibilityOnDemand=false")
	if err != nil {
		t.Fatal(err)
	}
	p := c.start(t, "kueue-controller", cmd)
	base := url("https", port)
	awaitServing(t, p, base, cert)

	c.registerWebhooks(t, filepath.Join(src.KueueSource, "config", "components", "webhook", "manifests.yaml"),
		"autofix-test-kueue", base, cert, scope)
	// A dry run of a queued workload comes back suspended once the API server calls
	// Kueue's defaulting webhook.
	probe := kueueProbe(frameworks[0])
	awaitMutation(t, p, c, schema.GroupVersionResource{Group: kueueFrameworkGroups[frameworks[0]],
		Version: probe.GroupVersionKind().Version, Resource: strings.ToLower(probe.GetKind()) + "s"},
		probe, "Kueue's webhook suspending a queued "+probe.GetKind(), "spec", "suspend")
	return &Controller{Name: "kueue-controller", Log: p.log, WebhookURL: base}
}

// kueueProbe is a workload of the framework, labelled with a queue, for a dry run.
func kueueProbe(framework string) *unstructured.Unstructured {
	container := []any{map[string]any{"name": "probe", "image": "probe"}}
	podTemplate := map[string]any{"spec": map[string]any{"restartPolicy": "Never", "containers": container}}
	meta := map[string]any{"name": "autofix-webhook-probe", "namespace": "default",
		"labels": map[string]any{QueueNameLabel: "autofix-webhook-probe"}}
	if framework == KueueJobSets {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": meta,
			"spec": map[string]any{"replicatedJobs": []any{map[string]any{
				"name": "probe", "template": map[string]any{"spec": map[string]any{"template": podTemplate}}}}}}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
		"spec": map[string]any{"template": podTemplate}}}
}

// kueueMetricsCertDir is where Kueue v0.19 reads its metrics certificate from.
const kueueMetricsCertDir = "/etc/kueue/metrics/certs"

// hostHasKueueMetricsCert reports whether the host's /etc holds a metrics
// certificate for Kueue (put there by whoever runs the tests without root).
func hostHasKueueMetricsCert() bool {
	for _, f := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Stat(filepath.Join(kueueMetricsCertDir, f)); err != nil {
			return false
		}
	}
	return true
}

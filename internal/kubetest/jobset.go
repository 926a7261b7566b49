package kubetest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/autofix/autofix/internal/testwait"
)

// JobSetGVR is the resource of JobSets (jobset.x-k8s.io/v1alpha2).
var JobSetGVR = schema.GroupVersionResource{Group: "jobset.x-k8s.io", Version: "v1alpha2", Resource: "jobsets"}

// jobSetNameLabel is on every Pod of a JobSet (and its Jobs): the JobSet's name.
const jobSetNameLabel = "jobset.sigs.k8s.io/jobset-name"

// StartJobSet runs the real JobSet controller (JobSetVersion) against the cluster
// until the test ends: it installs the JobSet CRD from the module, starts
// jobset-controller (log jobset-controller.log in c.Dir) and registers its webhooks
// by URL, and returns once its defaulting webhook answers the API server, so that a
// JobSet created next is defaulted (without that webhook the controller panics on
// it). Its pod webhooks are scoped, as in JobSet's release manifests, to pods that
// carry the jobset.sigs.k8s.io/jobset-name label: other pods of the cluster never
// wait on it.
func (c *Cluster) StartJobSet(t testwait.T) *Controller {
	t.Helper()
	src := controllers(t)
	c.InstallCRDs(t, filepath.Join(src.JobSetSource, "config", "components", "crd", "bases", "jobset.x-k8s.io_jobsets.yaml"))

	config, cert, port := c.controllerFiles(t, "jobset")
	write(t, config, fmt.Sprintf(`apiVersion: config.jobset.x-k8s.io/v1alpha1
kind: Configuration
leaderElection: {leaderElect: false}
internalCertManagement: {enable: false}
webhook: {host: 127.0.0.1, port: %d, certDir: %s}
metrics: {bindAddress: "0"}
health: {healthProbeBindAddress: "0"}
`, port, strconv.Quote(cert.dir)))
	bin := filepath.Join(src.Bin, "jobset-controller")
	p := c.start(t, "jobset-controller", exec.Command(bin, "--kubeconfig", c.Kubeconfig, "--config", config)) // #nosec G204 -- the test's own binary
	base := url("https", port)
	awaitServing(t, p, base, cert)

	c.registerWebhooks(t, filepath.Join(src.JobSetSource, "config", "components", "webhook", "manifests.yaml"),
		"autofix-test-jobset", base, cert, webhookScope{
			"jobset.x-k8s.io": {},
			"": {object: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: jobSetNameLabel, Operator: metav1.LabelSelectorOpExists}}}},
		})
	// The API server takes up a new webhook configuration a moment after it is
	// created: until a dry run comes back defaulted, it does not call the webhook.
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
		"metadata": map[string]any{"name": "autofix-webhook-probe", "namespace": "default"},
		"spec": map[string]any{"replicatedJobs": []any{map[string]any{
			"name": "probe", "template": map[string]any{"spec": map[string]any{"template": map[string]any{
				"spec": map[string]any{"containers": []any{map[string]any{"name": "probe", "image": "probe"}}}}}}}}},
	}}
	awaitMutation(t, p, c, JobSetGVR, probe, "the JobSet webhook defaulting spec.startupPolicy", "spec", "startupPolicy")
	return &Controller{Name: "jobset-controller", Log: p.log, WebhookURL: base}
}

// controllerFiles makes the directory of a controller's files in the test's
// directory, with a webhook certificate (certs/), and returns where its
// configuration goes, the certificate and a free port for its webhook server.
func (c *Cluster) controllerFiles(t testing.TB, name string) (config string, cert *webhookCert, port int) {
	t.Helper()
	dir := filepath.Join(c.Dir, name)
	cert = newWebhookCert(t, filepath.Join(dir, "certs"))
	return filepath.Join(dir, "config.yaml"), cert, freePort(t)
}

// awaitMutation dry-runs the creation of obj until the answer has a value at path,
// which only the controller's mutating webhook sets: then the API server calls it.
// It fails the test at its deadline or as soon as the controller has exited.
func awaitMutation(t testwait.T, p *process, c *Cluster, gvr schema.GroupVersionResource, obj *unstructured.Unstructured, what string, path ...string) {
	t.Helper()
	poll(t, p, what, func(ctx context.Context) error {
		got, err := c.Dynamic.Resource(gvr).Namespace(obj.GetNamespace()).Create(ctx, obj.DeepCopy(),
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		v, found, err := unstructured.NestedFieldNoCopy(got.Object, path...)
		if err != nil || !found || v == nil || v == false {
			return fmt.Errorf("a dry run's answer has %v at %v: not mutated yet", v, path)
		}
		return nil
	})
}

package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/autofix/autofix/internal/testwait"
)

// ArgoVersion is the version of the Argo Workflows controller the tests run: the
// one internal/kubetest/controllers/argo/go.mod names as a tool (a unit test holds
// them equal). Its cache directory is named after it. (v4 is not used: the only v4
// the module proxy serves is reported to have security flaws.)
const ArgoVersion = "v3.7.18"

const (
	argoModule  = "github.com/argoproj/argo-workflows/v3"
	argoPackage = argoModule + "/cmd/workflow-controller"
	// argoModuleDir is Argo's tools module, from the main module's root: a module of
	// its own, as Argo pins other Kubernetes versions than the JobSet/Kueue one.
	argoModuleDir = "internal/kubetest/controllers/argo"
	// ArgoNamespace is where the controller runs and keeps its configuration.
	ArgoNamespace = "argo"
)

// WorkflowGVR is the resource of Argo's Workflows.
var WorkflowGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}

// argoSet is the Argo controller's set of binaries.
var argoSet = binSet{what: "the Argo Workflows controller", names: []string{"workflow-controller"},
	took: "~6 minutes on 2 cores", env: "AUTOFIX_ARGO_BIN", cache: "argo-" + ArgoVersion}

// Argo is where the Argo Workflows controller and its manifests are.
type Argo struct {
	// Bin holds workflow-controller.
	Bin string
	// Source is the module's directory in the module cache (read-only): its
	// manifests/base/crds hold the CRDs the tests install.
	Source string
}

// ArgoDir is where the Argo controller's binary is kept: $AUTOFIX_ARGO_BIN, or
// argo-<ArgoVersion> under the user's cache directory, beside the control plane.
func ArgoDir() (string, error) { return argoSet.dir() }

// EnsureArgo returns where the Argo controller and its manifests are, downloading
// the module and building the binary first if it is not there (minutes, the first
// time), in a child process (go run ./internal/kubetest/cmd/argo, which runs
// BuildArgo) that finishes the build even if this process is killed meanwhile.
func EnsureArgo(ctx context.Context, log io.Writer) (*Argo, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	src, err := argoSource(ctx, root)
	if err != nil {
		return nil, err
	}
	a := &Argo{Source: src}
	if a.Bin, err = ArgoDir(); err != nil {
		return nil, err
	}
	if argoSet.complete(a.Bin) {
		return a, nil
	}
	cmd := exec.Command("go", "run", "./internal/kubetest/cmd/argo") // #nosec G204 -- the repository's own command
	cmd.Dir, cmd.Stderr = root, log
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go run ./internal/kubetest/cmd/argo: %w", err)
	}
	if got := strings.TrimSpace(string(out)); got != a.Bin {
		return nil, fmt.Errorf("./internal/kubetest/cmd/argo built into %s, want %s", got, a.Bin)
	}
	return a, nil
}

// BuildArgo is EnsureArgo in this process: it builds the controller, if it is not
// there, from internal/kubetest/controllers/argo (stripped), and returns its
// directory.
func BuildArgo(ctx context.Context, log io.Writer) (string, error) {
	dir, err := ArgoDir()
	if err != nil {
		return "", err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	tools := filepath.Join(root, argoModuleDir)
	return dir, argoSet.ensure(ctx, dir, func(ctx context.Context, tmp string) error {
		return goCommand(ctx, tools, log, "build", "-ldflags", "-s -w", "-o", filepath.Join(tmp, "workflow-controller"), argoPackage)
	}, log)
}

// argoSource downloads Argo's module (a no-op once it is in the module cache) and
// returns its directory, checking that the tools module names ArgoVersion.
func argoSource(ctx context.Context, root string) (string, error) {
	var out bytes.Buffer
	tools := filepath.Join(root, argoModuleDir)
	if err := goCommand(ctx, tools, &out, "mod", "download", "-json", argoModule); err != nil {
		return "", fmt.Errorf("%w: %s", err, tailBytes(out.Bytes(), 2048))
	}
	var m struct{ Path, Version, Dir, Error string }
	if err := json.NewDecoder(&out).Decode(&m); err != nil {
		return "", fmt.Errorf("go mod download -json in %s: %w", tools, err)
	}
	switch {
	case m.Error != "":
		return "", fmt.Errorf("download %s: %s", argoModule, m.Error)
	case m.Version != ArgoVersion:
		return "", fmt.Errorf("%s/go.mod requires %s %s, kubetest's constant says %s: change both", argoModuleDir, argoModule, m.Version, ArgoVersion)
	case m.Dir == "":
		return "", errors.New("go mod download: no directory for " + argoModule)
	}
	return m.Dir, nil
}

var (
	argoOnce   sync.Once
	argoCached *Argo
	errArgo    error
)

func ensureArgoOnce() error {
	argoOnce.Do(func() { argoCached, errArgo = EnsureArgo(context.Background(), os.Stderr) })
	return errArgo
}

// MainWithAddons is Main for a package whose tests run the JobSet, Kueue or Argo
// controllers: it builds them, when they are not cached, before m.Run.
func MainWithAddons(m *testing.M, after ...func()) {
	runMain(m, func() error {
		controllersOnce.Do(func() {
			controllersCached, errControllers = EnsureControllers(context.Background(), os.Stderr)
		})
		return errors.Join(errControllers, ensureArgoOnce())
	}, after)
}

// StartArgo runs the real Argo Workflows controller (ArgoVersion) against the
// cluster until the test ends: it installs Argo's minimal CRDs from the module
// (manifests/base/crds/minimal: the schema-less ones, x-kubernetes-preserve-unknown-fields;
// the full Workflow CRD alone is 3.2 MB of schema, and would add hundreds of MB to
// the API server), creates the namespace argo with the controller's ConfigMap
// (metrics off, nothing else), starts workflow-controller there (log workflow-controller.log in
// c.Dir; leader election off), and returns once it has reconciled a probe
// Workflow. The executor image it names is only written into pod specs: the
// test's kubelet (RunArgoKubelet) plays the pods.
func (c *Cluster) StartArgo(t testwait.T) *Controller {
	t.Helper()
	if err := ensureArgoOnce(); err != nil {
		t.Fatal(err)
	}
	src := argoCached
	files, err := filepath.Glob(filepath.Join(src.Source, "manifests", "base", "crds", "minimal", "argoproj.io_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("Argo's minimal CRDs in %s: %v (%d files)", src.Source, err, len(files))
	}
	c.InstallCRDs(t, files...)
	ctx := testwait.Context(t)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ArgoNamespace}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// Its metrics server would listen on :9090 of every interface, and exit when
	// another process has it: it is off. (Its health endpoint, :6060, is not
	// configurable; when taken, the controller logs it and runs on.)
	if _, err := c.Client.CoreV1().ConfigMaps(ArgoNamespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "workflow-controller-configmap", Namespace: ArgoNamespace},
		Data:       map[string]string{"metricsConfig": "enabled: false\n", "telemetryConfig": "enabled: false\n"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(src.Bin, "workflow-controller")
	cmd := exec.Command(bin, "--kubeconfig", c.Kubeconfig, "--namespace", ArgoNamespace, // #nosec G204 -- the test's own binary
		"--executor-image", "quay.io/argoproj/argoexec:"+ArgoVersion, "--workflow-workers", "4", "--pod-cleanup-workers", "1")
	// The workflow queue's requeue time (default 10 s) paces every step of a
	// Workflow: a test's Workflows move on as soon as their pods end instead.
	cmd.Env = append(os.Environ(), "LEADER_ELECTION_DISABLE=true", "DEFAULT_REQUEUE_TIME=1s")
	p := c.start(t, "workflow-controller", cmd)
	// A Workflow with no templates: the controller fails its validation, which it
	// writes as phase Error.
	probe := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": "autofix-argo-probe", "namespace": ArgoNamespace},
		"spec":     map[string]any{"entrypoint": "none"}}}
	if _, err := c.Dynamic.Resource(WorkflowGVR).Namespace(ArgoNamespace).Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, p, "the Argo controller reconciling a probe Workflow", func(ctx context.Context) error {
		got, err := c.Dynamic.Resource(WorkflowGVR).Namespace(ArgoNamespace).Get(ctx, "autofix-argo-probe", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if phase, _, _ := unstructured.NestedString(got.Object, "status", "phase"); phase == "" {
			return errors.New("the probe Workflow has no phase yet")
		}
		return nil
	})
	return &Controller{Name: "workflow-controller", Log: p.log}
}

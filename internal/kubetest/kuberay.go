package kubetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/autofix/autofix/internal/testwait"
)

// KubeRayVersion is the version of KubeRay whose CRDs the RayJob tests install:
// the one internal/kubetest/controllers/go.mod requires (through Kueue, which
// integrates RayJobs). Its operator is not run: docs/kubernetes.md, "RayJob".
const KubeRayVersion = "v1.6.2"

// kubeRayModule is KubeRay's operator module, which holds its CRDs.
const kubeRayModule = "github.com/ray-project/kuberay/ray-operator"

// InstallKubeRayCRDs installs KubeRay's RayJob and RayCluster CRDs, as released
// in its module (downloaded into the module cache through the tools module, a
// no-op once there), and waits until they are Established.
func (c *Cluster) InstallKubeRayCRDs(t testwait.T) {
	t.Helper()
	ctx := testwait.Context(t)
	root, err := moduleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tools := filepath.Join(root, controllersModuleDir)
	if err := goCommand(ctx, tools, &out, "mod", "download", "-json", kubeRayModule); err != nil {
		t.Fatalf("%v: %s", err, tailBytes(out.Bytes(), 2048))
	}
	var m struct{ Version, Dir, Error string }
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("go mod download -json %s: %v", kubeRayModule, err)
	}
	switch {
	case m.Error != "":
		t.Fatalf("download %s: %s", kubeRayModule, m.Error)
	case m.Version != KubeRayVersion:
		t.Fatal(fmt.Errorf("%s/go.mod requires %s %s, kubetest.KubeRayVersion says %s: change both",
			controllersModuleDir, kubeRayModule, m.Version, KubeRayVersion))
	}
	bases := filepath.Join(m.Dir, "config", "crd", "bases")
	c.InstallCRDs(t, filepath.Join(bases, "ray.io_rayclusters.yaml"), filepath.Join(bases, "ray.io_rayjobs.yaml"))
}

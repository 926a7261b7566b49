package kubetest

import (
	"os"
	"strings"
	"testing"
)

// TestArgoVersionIsTheBuiltOne: the Argo controller's cache is keyed by the
// version internal/kubetest/controllers/argo builds.
func TestArgoVersionIsTheBuiltOne(t *testing.T) {
	b, err := os.ReadFile("controllers/argo/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{argoModule + " " + ArgoVersion + " ", "tool " + argoPackage + "\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("controllers/argo/go.mod does not hold %q: the cache directory would be named for another version, or the build name another package", strings.TrimSpace(want))
		}
	}
}

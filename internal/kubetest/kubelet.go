package kubetest

import (
	"context"
	"testing"

	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/simcluster"
)

// RunKubelet registers the nodes and runs the simulated kubelet against the control
// plane until the test ends.
func RunKubelet(t testing.TB, client kubernetes.Interface, truth simcluster.Truth, nodes ...simcluster.Node) *simcluster.Kubelet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	k := simcluster.NewKubelet(client, truth, nodes...)
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return k
}

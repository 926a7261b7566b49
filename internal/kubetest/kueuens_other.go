//go:build !linux

package kubetest

import (
	"fmt"
	"os/exec"
)

// kueueCommand is the command that runs kueue-controller (bin) with args. Outside
// Linux there are no mount namespaces: it runs the controller as it is when the
// host has /etc/kueue/metrics/certs/tls.{crt,key}, and returns an error otherwise.
func kueueCommand(_, _, bin string, args ...string) (*exec.Cmd, error) {
	if hostHasKueueMetricsCert() {
		return exec.Command(bin, args...), nil // #nosec G204 -- the test's own binary
	}
	return nil, fmt.Errorf("kueue-controller reads a certificate from %s/tls.{crt,key}: put a certificate and key there", kueueMetricsCertDir)
}

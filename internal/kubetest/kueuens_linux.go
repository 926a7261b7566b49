package kubetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// kueueMount is run by sh in the controller's new mount namespace: it lays an
// overlay over /etc (upper and work directories in $1), writes the metrics
// certificate ($2's tls.crt and tls.key) into it, and execs the controller.
const kueueMount = `set -e
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
mkdir -p ` + kueueMetricsCertDir + `
cp "$2/tls.crt" "$2/tls.key" ` + kueueMetricsCertDir + `/
shift 2
exec "$@"`

// kueueCommand is the command that runs kueue-controller (bin) with args. As root,
// it runs in a mount namespace of its own (CLONE_NEWNS; Go makes its mounts
// private), where sh lays an overlay over /etc holding certDir's certificate in
// /etc/kueue/metrics/certs before it execs the controller: the overlay is seen by
// the controller alone and goes away with it, and the host's /etc is never
// written. Without root it runs the controller as it is when the host already has
// /etc/kueue/metrics/certs/tls.{crt,key}, and returns an error saying so otherwise.
func kueueCommand(dir, certDir, bin string, args ...string) (*exec.Cmd, error) {
	if os.Geteuid() != 0 {
		if hostHasKueueMetricsCert() {
			return exec.Command(bin, args...), nil // #nosec G204 -- the test's own binary
		}
		return nil, fmt.Errorf("kueue-controller reads a certificate from %s/tls.{crt,key}: run the tests as root "+
			"(it then gets its own, in a private mount namespace) or put a certificate and key there", kueueMetricsCertDir)
	}
	overlay := filepath.Join(dir, "etc-overlay")
	for _, d := range []string{"upper", "work"} {
		if err := os.MkdirAll(filepath.Join(overlay, d), 0o700); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", kueueMount, "sh", overlay, certDir, bin}, args...)...) // #nosec G204 -- fixed script, the test's own binary
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return cmd, nil
}

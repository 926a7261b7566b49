// Command controlplane makes sure the control plane the integration tests run is
// built and cached, building it if not (minutes, the first time), and prints the
// directory of its binaries. test/cluster/build.sh without arguments runs it: the
// integration tests do (kubetest.EnsureBinaries), and CI before them, to time the
// build on its own.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/autofix/autofix/internal/kubetest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The test process that started it may be killed meanwhile (go test's timeout),
	// taking the read ends of stdout and stderr with it: the build goes on, and
	// renames itself into place, rather than dying at its next line of output. The
	// build's own processes inherit the ignoring.
	signal.Ignore(syscall.SIGPIPE)
	dir, err := kubetest.BuildBinaries(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		stop()
		os.Exit(1)
	}
	fmt.Println(dir)
}

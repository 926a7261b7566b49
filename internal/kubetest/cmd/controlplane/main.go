// Command controlplane makes sure the control plane the integration tests run is
// built and cached, building it if not (minutes, the first time), and prints the
// directory of its binaries. test/cluster/build.sh without arguments runs it; CI
// runs it before the integration tests to time the build on its own.
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
	dir, err := kubetest.EnsureBinaries(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		stop()
		os.Exit(1)
	}
	fmt.Println(dir)
}

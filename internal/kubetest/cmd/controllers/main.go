// Command controllers makes sure the JobSet and Kueue controllers the integration
// tests run are built and cached, building them from internal/kubetest/controllers
// if not (minutes, the first time), and prints the directory of their binaries.
// The integration tests run it (kubetest.EnsureControllers), and CI before them, to
// time the build on its own.
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
	// As cmd/controlplane: the build outlives a test process killed meanwhile.
	signal.Ignore(syscall.SIGPIPE)
	dir, err := kubetest.BuildControllers(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "controllers:", err)
		stop()
		os.Exit(1)
	}
	fmt.Println(dir)
}

// Command autofix classifies failed ML jobs and recommends how to fix them.
// Run `autofix --help` for the subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// exitError carries an exit status out of a subcommand that has already reported
// its problem.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// run executes the command line and returns the process exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal asks for a graceful stop; a second one, with the default
	// handling restored, ends the process at once.
	go func() { <-ctx.Done(); stop() }()

	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if code, ok := errors.AsType[exitError](err); ok {
		return int(code)
	}
	if err != nil {
		fmt.Fprintln(stderr, "autofix:", err)
		return 1
	}
	return 0
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "autofix",
		Short:         "Classify failed ML jobs and recommend how to fix them",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newClassifyCmd(), newRulesCmd(), newTrainCmd(), newTrainClassifierCmd(), newSimulateCmd(), newRecommendCmd(),
		newServeCmd(), newWatchCmd(), newPublishCmd(), newLedgerCmd(), newPolicyCmd(), newPipelineCmd(), newBenchCmd(), newBenchPeaksCmd(), newTokenCmd(), newReviewCmd(), newModelsCmd())
	return root
}

// Command controllers makes sure the JobSet and Kueue controllers the integration
// tests run are built and cached, building them from internal/kubetest/controllers
// if not (minutes, the first time), and prints the directory of their binaries.
// The integration tests run it (kubetest.EnsureControllers), and CI before them, to
// time the build on its own.
package main

import "github.com/autofix/autofix/internal/kubetest"

func main() { kubetest.RunBuild("controllers", kubetest.BuildControllers) }

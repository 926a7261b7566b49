// Command argo makes sure the Argo Workflows controller the integration tests run
// is built and cached, building it from internal/kubetest/controllers/argo if not
// (minutes, the first time), and prints the directory of its binary. The
// integration tests run it (kubetest.EnsureArgo), and CI before them, to time the
// build on its own.
package main

import "github.com/autofix/autofix/internal/kubetest"

func main() { kubetest.RunBuild("argo", kubetest.BuildArgo) }

// Command controlplane makes sure the control plane the integration tests run is
// built and cached, building it if not (minutes, the first time), and prints the
// directory of its binaries. test/cluster/build.sh without arguments runs it: the
// integration tests do (kubetest.EnsureBinaries), and CI before them, to time the
// build on its own.
package main

import "github.com/autofix/autofix/internal/kubetest"

func main() { kubetest.RunBuild("controlplane", kubetest.BuildBinaries) }

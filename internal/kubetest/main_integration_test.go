//go:build integration

package kubetest

import "testing"

// TestMain builds the control plane and the JobSet and Kueue controllers, if they
// are not cached, before the tests' timeout starts.
func TestMain(m *testing.M) { MainWithControllers(m) }

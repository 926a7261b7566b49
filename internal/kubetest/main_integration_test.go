//go:build integration

package kubetest

import "testing"

// TestMain builds the control plane, if it is not cached, before the tests' timeout
// starts.
func TestMain(m *testing.M) { Main(m) }

//go:build integration

package main

import (
	"testing"

	"github.com/autofix/autofix/internal/kubetest"
)

// TestMain builds the control plane and the JobSet and Kueue controllers, if they are
// not cached, before the tests' timeout starts.
func TestMain(m *testing.M) { kubetest.MainWithControllers(m, removeBinary) }

//go:build integration

package main

import (
	"testing"

	"github.com/autofix/autofix/internal/kubetest"
)

// TestMain builds the control plane, if it is not cached, before the tests' timeout
// starts.
func TestMain(m *testing.M) { kubetest.Main(m, removeBinary) }

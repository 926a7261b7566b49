//go:build integration

package main

import (
	"testing"

	"github.com/autofix/autofix/internal/kubetest"
)

// TestMain builds the control plane and the JobSet, Kueue and Argo controllers, if they are
// not cached, before the tests' timeout starts.
func TestMain(m *testing.M) { kubetest.MainWithAddons(m, removeBinary) }

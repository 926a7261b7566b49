//go:build !integration

package main

import (
	"os"
	"testing"
)

// TestMain removes the binary the tests built once they are done (the integration
// build's TestMain does too).
func TestMain(m *testing.M) {
	code := m.Run()
	removeBinary()
	os.Exit(code)
}

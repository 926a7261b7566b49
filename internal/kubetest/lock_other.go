//go:build !unix

package kubetest

import (
	"context"
	"errors"
)

// lockFile is not implemented here: the control plane the tests run is built and
// run on Unix only.
func lockFile(context.Context, string, func()) (func(), error) {
	return nil, errors.New("the control-plane cache lock needs flock(2) (Unix)")
}

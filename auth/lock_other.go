//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package auth

import (
	"fmt"
	"runtime"
)

// lockFile cannot lock the token file here: changing it is refused rather than done
// without the lock, which could lose a concurrent change (a revocation).
func lockFile(path string) (unlock func(), err error) {
	return nil, fmt.Errorf("lock %s: file locking is not supported on %s", path, runtime.GOOS)
}

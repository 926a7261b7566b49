// Package boundedfile reads the files an operator names — secrets, certificates,
// keys — that the service may read again while it runs: only a regular file (a
// symlink to one, as a mounted Kubernetes Secret is, included), and at most a bound.
// A FIFO or a device named by mistake must not block the reader, and a huge file
// must not be read into memory.
package boundedfile

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Read returns the content of the regular file at path, of at most max bytes. The
// file is opened without blocking and checked on the open descriptor, so a FIFO put
// in its place between a check and the read cannot block it either.
func Read(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0) // #nosec G304 -- the operator names the file
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over the %d-byte limit", path, max)
	}
	return b, nil
}

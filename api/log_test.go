package api

import (
	"io"
	"log/slog"
	"sync"
)

// lockedWriter lets the server's goroutines share a test's buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.(interface{ String() string }).String()
}

// newTestLogger logs into w; the returned function reads it safely.
func newTestLogger(w io.Writer) (*slog.Logger, func() string) {
	lw := &lockedWriter{w: w}
	return slog.New(slog.NewTextHandler(lw, nil)), lw.String
}

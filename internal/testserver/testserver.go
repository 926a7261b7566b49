// Package testserver runs a server binary for a test — Prometheus, Alertmanager —
// on a free loopback port, until it answers /-/ready.
package testserver

import (
	"bytes"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/autofix/autofix/internal/testwait"
)

// Server is a running server binary.
type Server struct {
	// URL is its base URL, http://127.0.0.1:PORT.
	URL string

	name   string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	exited chan struct{}
	once   sync.Once
}

// Start runs bin with args(addr), addr the loopback address it is to listen on, and
// waits until it answers /-/ready; name is for messages. The port is free when chosen
// and taken by the server a moment later; another process may take it in between,
// and then the next try has another. It is stopped when the test ends, and its log
// printed if the test failed.
func Start(t testwait.T, name, bin string, args func(addr string) []string) *Server {
	t.Helper()
	for try := 1; ; try++ {
		s := start(t, name, bin, args(net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))))
		if s.ready(t) {
			return s
		}
		if try == 3 || !strings.Contains(s.log.String(), "address already in use") {
			t.Fatalf("%s exited before it was ready:\n%s", name, s.log.String())
		}
	}
}

func start(t testing.TB, name, bin string, args []string) *Server {
	t.Helper()
	s := &Server{name: name, log: &bytes.Buffer{}, exited: make(chan struct{})}
	for _, a := range args {
		if addr, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			s.URL = "http://" + addr
		}
	}
	s.cmd = exec.Command(bin, args...) // #nosec G204 -- the test's own binary and files
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, s.log.String())
		}
	})
	return s
}

// ready waits until the server answers /-/ready (true), or has exited (false).
func (s *Server) ready(t testwait.T) bool {
	t.Helper()
	up := false
	testwait.Poll(t, s.name+" to be ready", func() bool {
		select {
		case <-s.exited:
			return true
		default:
		}
		resp, err := http.Get(s.URL + "/-/ready") // #nosec G107 -- the test's own server
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		up = resp.StatusCode == http.StatusOK
		return up
	})
	return up
}

// Stop kills the server and waits for it to exit. It may be called more than once.
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill() // an error: it has exited already
		<-s.exited
	})
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

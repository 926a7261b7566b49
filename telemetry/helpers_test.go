package telemetry

import (
	"net"
	"sync"
	"testing"
)

// blackHole is the URL of a server that accepts connections and never answers.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// freezer is a TCP proxy to target whose open connections can be frozen: no byte
// passes on them either way, and none is closed, as when the node of the server
// they reach dies. Connections opened after a freeze pass (the server is back,
// behind the same address).
type freezer struct {
	addr string

	mu     sync.Mutex
	frozen chan struct{} // closed: the connections opened before it are frozen
	conns  []net.Conn
	done   chan struct{}
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{addr: ln.Addr().String(), frozen: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn, frozen chan struct{}) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-frozen:
				<-f.done // hold on to it, and forward nothing
				return
			default:
			}
			if n > 0 {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				_ = dst.Close()
				return
			}
		}
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			f.mu.Lock()
			frozen := f.frozen
			f.conns = append(f.conns, c, u)
			f.mu.Unlock()
			wg.Go(func() { pipe(u, c, frozen) })
			wg.Go(func() { pipe(c, u, frozen) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		close(f.done)
		f.mu.Lock()
		for _, c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	return f
}

// freeze freezes the connections open now.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.frozen)
	f.frozen = make(chan struct{})
}

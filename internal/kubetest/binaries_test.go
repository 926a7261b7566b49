package kubetest

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeBuild writes the named binaries (all of them by default) into dir.
func fakeBuild(dir string, names ...string) error {
	if len(names) == 0 {
		names = binaryNames
	}
	for _, b := range names {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o700); err != nil { // #nosec G306 -- an executable
			return err
		}
	}
	return nil
}

// signalWriter closes ch the first time a line containing want is written.
type signalWriter struct {
	want string
	ch   chan struct{}
	once sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.want) {
		w.once.Do(func() { close(w.ch) })
	}
	return len(p), nil
}

// TestEnsureBuildsOnceForConcurrentCallers: while one caller builds, another waits
// on the lock, and then uses the first one's build instead of building again.
func TestEnsureBuildsOnceForConcurrentCallers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "k8s")
	var builds atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	build := func(_ context.Context, tmp string) error {
		if builds.Add(1) == 1 {
			close(started)
			<-release // until the second caller is waiting on the lock
		}
		return fakeBuild(tmp)
	}
	errs := make(chan error, 2)
	go func() { errs <- ensure(context.Background(), dir, build, io.Discard) }()
	<-started
	waiting := &signalWriter{want: "waiting", ch: make(chan struct{})}
	go func() { errs <- ensure(context.Background(), dir, build, waiting) }()
	<-waiting.ch
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("ensure() = %v, want nil", err)
		}
	}
	if got := builds.Load(); got != 1 {
		t.Errorf("builder ran %d times, want 1", got)
	}
	if m := missingFrom(dir); len(m) > 0 {
		t.Errorf("after the build, %s lacks %v", dir, m)
	}
	if left, _ := filepath.Glob(dir + ".tmp-*"); len(left) > 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

// TestEnsureNeverKeepsAHalfBuild: a build that fails or leaves a binary out leaves
// no cache behind, and the next caller builds afresh.
func TestEnsureNeverKeepsAHalfBuild(t *testing.T) {
	for _, tc := range []struct {
		name    string
		build   Builder
		wantErr string
	}{
		{"the build fails half way", func(_ context.Context, tmp string) error {
			if err := fakeBuild(tmp, "etcd", "kube-apiserver"); err != nil {
				return err
			}
			return errors.New("signal: killed")
		}, "signal: killed"},
		{"the build leaves a binary out", func(_ context.Context, tmp string) error {
			return fakeBuild(tmp, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
		}, "left out kubectl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "k8s")
			err := ensure(context.Background(), dir, tc.build, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ensure() = %v, want an error saying %q", err, tc.wantErr)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after a failed build, %s exists (%v): a half build would be taken for a built one", dir, err)
			}
			builds := 0
			if err := ensure(context.Background(), dir, func(_ context.Context, tmp string) error { builds++; return fakeBuild(tmp) }, io.Discard); err != nil || builds != 1 {
				t.Errorf("the next ensure() = %v after %d builds, want nil after 1", err, builds)
			}
		})
	}
}

// TestEnsureLeftovers: what an interrupted build left is never used, and a cache
// directory holding anything else is left alone.
func TestEnsureLeftovers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		setup      func(t *testing.T, dir string)
		wantBuilds int
		wantErr    string
	}{
		{"a complete cache is used as it is", func(t *testing.T, dir string) { mkBins(t, dir, binaryNames...) }, 0, ""},
		{"a killed build's temporary directory is removed, not used", func(t *testing.T, dir string) {
			mkBins(t, dir+".tmp-123", binaryNames...)
		}, 1, ""},
		{"a cache with some binaries and nothing else is rebuilt", func(t *testing.T, dir string) {
			mkBins(t, dir, "etcd", "kube-apiserver")
		}, 1, ""},
		{"a binary that is not executable is not a binary", func(t *testing.T, dir string) {
			mkBins(t, dir, binaryNames...)
			if err := os.Chmod(filepath.Join(dir, "kubectl"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, 1, ""},
		{"a directory holding other files is not removed", func(t *testing.T, dir string) {
			mkBins(t, dir, "etcd")
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, 0, "holds notes.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "k8s")
			tc.setup(t, dir)
			builds := 0
			err := ensure(context.Background(), dir, func(_ context.Context, tmp string) error { builds++; return fakeBuild(tmp) }, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ensure() = %v, want an error saying %q", err, tc.wantErr)
				}
				if _, serr := os.Stat(filepath.Join(dir, "notes.txt")); serr != nil {
					t.Errorf("the directory's own file is gone: %v", serr)
				}
				return
			}
			if err != nil || builds != tc.wantBuilds {
				t.Errorf("ensure() = %v after %d builds, want nil after %d", err, builds, tc.wantBuilds)
			}
			if m := missingFrom(dir); len(m) > 0 {
				t.Errorf("%s lacks %v", dir, m)
			}
			if left, _ := filepath.Glob(dir + ".tmp-*"); len(left) > 0 {
				t.Errorf("temporary directories left: %v", left)
			}
		})
	}
}

// TestEnsureWaitEndsWithContext: a caller waiting for another's build gives up
// when its context ends.
func TestEnsureWaitEndsWithContext(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "k8s")
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- ensure(context.Background(), dir, func(_ context.Context, tmp string) error {
			close(started)
			<-release
			return fakeBuild(tmp)
		}, io.Discard)
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	waiting := &signalWriter{want: "waiting", ch: make(chan struct{})}
	go func() { <-waiting.ch; cancel() }()
	err := ensure(ctx, dir, func(context.Context, string) error { t.Error("a second build"); return nil }, waiting)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ensure() with its context cancelled while waiting = %v, want context.Canceled", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("the building caller: ensure() = %v", err)
	}
}

// TestVersionIsTheBuiltOne: the cache is keyed by the version test/cluster builds.
func TestVersionIsTheBuiltOne(t *testing.T) {
	b, err := os.ReadFile("../../test/cluster/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if want := "k8s.io/kubernetes " + Version + "\n"; !strings.Contains(string(b), want) {
		t.Errorf("test/cluster/go.mod does not require %q: the cache directory would be named for another version", strings.TrimSpace(want))
	}
}

func mkBins(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := fakeBuild(dir, names...); err != nil {
		t.Fatal(err)
	}
}

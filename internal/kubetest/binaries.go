package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Version is the Kubernetes version of the control plane the tests run.
const Version = "v1.37.2"

// binaryNames are the binaries a built directory holds; a directory missing one of
// them is not a built one.
var binaryNames = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"}

// Builder builds the control-plane binaries into dir, an empty directory that
// becomes the cache only once Builder has returned nil.
type Builder func(ctx context.Context, dir string) error

// BinDir is where the control-plane binaries are kept: $AUTOFIX_K8S_BIN, or
// k8s-<Version> under the user's cache directory ($XDG_CACHE_HOME or ~/.cache).
func BinDir() (string, error) { return controlPlane.dir() }

// EnsureBinaries returns the directory of the control-plane binaries, building them
// first if they are not there (minutes, the first time). The build runs in a child
// process (test/cluster/build.sh, which runs BuildBinaries) that finishes it even
// if this process is killed meanwhile (go test kills a test binary a minute past
// its timeout): the build is not lost, and the next caller uses it or waits for it.
func EnsureBinaries(ctx context.Context, log io.Writer) (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	if complete(dir) {
		return dir, nil
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "test", "cluster", "build.sh")
	cmd := exec.Command(script) // #nosec G204 -- the repository's own build script
	cmd.Stderr = log
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	if got := strings.TrimSpace(string(out)); got != dir {
		return "", fmt.Errorf("%s built into %s, want %s", script, got, dir)
	}
	return dir, nil
}

// BuildBinaries is EnsureBinaries in this process: it builds the binaries, if they
// are not there, with test/cluster/build.sh DIR, and returns their directory.
func BuildBinaries(ctx context.Context, log io.Writer) (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	return dir, ensure(ctx, dir, buildScript, log)
}

// binSet is a set of binaries built together and cached in one directory.
type binSet struct {
	what  string   // what it is, in messages: "the control plane"
	names []string // the binaries a built directory holds
	// took is how long a first build takes, in the message that says one starts.
	took string
	// env is the environment variable that names another directory for it.
	env string
	// cache is its directory's name under autofix's in the user's cache directory.
	cache string
}

// controlPlane is the control plane's set.
var controlPlane = binSet{what: "the control plane", names: binaryNames,
	took: "~8 minutes on 2 cores", env: "AUTOFIX_K8S_BIN", cache: "k8s-" + Version}

// dir is where the set is kept: $env, or autofix/<cache> under the user's cache
// directory ($XDG_CACHE_HOME or ~/.cache).
func (s binSet) dir() (string, error) {
	if dir := os.Getenv(s.env); dir != "" {
		return filepath.Abs(dir)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for %s (set %s): %w", s.what, s.env, err)
	}
	return filepath.Join(cache, "autofix", s.cache), nil
}

// RunBuild is the main function of a command that builds a set of binaries
// (cmd/controlplane, cmd/controllers) and prints their directory; it exits 1 on an
// error. The test process that started the command may be killed meanwhile (go
// test's timeout), taking the read ends of stdout and stderr with it: the build goes
// on, and renames itself into place, rather than dying at its next line of output.
// The build's own processes inherit the ignoring of SIGPIPE.
func RunBuild(name string, build func(ctx context.Context, log io.Writer) (string, error)) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	signal.Ignore(syscall.SIGPIPE)
	dir, err := build(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		stop()
		os.Exit(1)
	}
	fmt.Println(dir)
}

// ensure makes dir a complete set of the control-plane binaries (controlPlane.ensure).
func ensure(ctx context.Context, dir string, build Builder, log io.Writer) error {
	return controlPlane.ensure(ctx, dir, build, log)
}

// missingFrom lists the control-plane binaries dir lacks.
func missingFrom(dir string) []string { return controlPlane.missingFrom(dir) }

// complete reports whether dir holds every control-plane binary.
func complete(dir string) bool { return controlPlane.complete(dir) }

// ensure makes dir a complete set of binaries. Under an exclusive lock on dir.lock,
// it builds into a fresh temporary directory beside dir and renames that to dir only
// when the build succeeded, so that dir is never seen half built; a caller that
// finds the lock taken waits for it and then uses what the holder built.
func (s binSet) ensure(ctx context.Context, dir string, build Builder, log io.Writer) error {
	if s.complete(dir) {
		return nil
	}
	parent, base := filepath.Split(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return fmt.Errorf("%s cache: %w", s.what, err)
	}
	lockPath := filepath.Join(parent, base+".lock")
	unlock, err := lockFile(ctx, lockPath, func() {
		_, _ = fmt.Fprintf(log, "kubetest: another process is building %s into %s; waiting for it (lock %s)\n", s.what, dir, lockPath)
	})
	if err != nil {
		return fmt.Errorf("lock %s: %w", lockPath, err)
	}
	defer unlock()
	if s.complete(dir) { // built while this caller waited
		return nil
	}
	if err := s.clearStale(parent, base, dir); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, base+".tmp-")
	if err != nil {
		return fmt.Errorf("%s cache: %w", s.what, err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // gone by then when the build was kept
	start := time.Now()
	_, _ = fmt.Fprintf(log, "kubetest: building %s into %s (first use: %s; not counted in the test timeout)\n", s.what, dir, s.took)
	if err := build(ctx, tmp); err != nil {
		return fmt.Errorf("build %s: %w", s.what, err)
	}
	if missing := s.missingFrom(tmp); len(missing) > 0 {
		return fmt.Errorf("build %s: the build left out %s", s.what, strings.Join(missing, ", "))
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("%s cache: %w", s.what, err)
	}
	_, _ = fmt.Fprintf(log, "kubetest: %s built in %s\n", s.what, time.Since(start).Round(time.Second))
	return nil
}

// clearStale removes, under the lock, what an interrupted build left: temporary
// directories (a build in progress holds the lock, so these are dead), and a dir
// that holds some of the binaries and nothing else (the copy-in-place of an older
// build script, interrupted). A dir holding anything else is not ours to remove.
func (s binSet) clearStale(parent, base, dir string) error {
	leftovers, err := filepath.Glob(filepath.Join(parent, base+".tmp-*"))
	if err != nil {
		return err
	}
	for _, l := range leftovers {
		if err := os.RemoveAll(l); err != nil {
			return fmt.Errorf("remove an interrupted build: %w", err)
		}
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("%s cache: %w", s.what, err)
	}
	for _, e := range entries {
		if !slices.Contains(s.names, e.Name()) {
			return fmt.Errorf("%s cache %s exists without %s and holds %s: remove it or set %s elsewhere",
				s.what, dir, strings.Join(s.missingFrom(dir), ", "), e.Name(), s.env)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove an incomplete %s cache: %w", s.what, err)
	}
	return nil
}

// complete reports whether dir holds every binary.
func (s binSet) complete(dir string) bool { return len(s.missingFrom(dir)) == 0 }

// missingFrom lists the binaries dir lacks (or holds but not as executables).
func (s binSet) missingFrom(dir string) []string {
	var missing []string
	for _, b := range s.names {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// buildScript builds with the repository's test/cluster/build.sh, its output on
// stderr.
func buildScript(ctx context.Context, dir string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	script := filepath.Join(root, "test", "cluster", "build.sh")
	cmd := exec.CommandContext(ctx, script, dir) // #nosec G204 -- the repository's own build script
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", script, err)
	}
	return nil
}

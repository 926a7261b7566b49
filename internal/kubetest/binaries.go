package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
func BinDir() (string, error) {
	if dir := os.Getenv("AUTOFIX_K8S_BIN"); dir != "" {
		return filepath.Abs(dir)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the control plane (set AUTOFIX_K8S_BIN): %w", err)
	}
	return filepath.Join(cache, "autofix", "k8s-"+Version), nil
}

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
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/autofix/autofix").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root: %w", err)
	}
	script := filepath.Join(strings.TrimSpace(string(root)), "test", "cluster", "build.sh")
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

// ensure makes dir a complete set of binaries. Under an exclusive lock on dir.lock,
// it builds into a fresh temporary directory beside dir and renames that to dir only
// when the build succeeded, so that dir is never seen half built; a caller that
// finds the lock taken waits for it and then uses what the holder built.
func ensure(ctx context.Context, dir string, build Builder, log io.Writer) error {
	if complete(dir) {
		return nil
	}
	parent, base := filepath.Split(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return fmt.Errorf("control-plane cache: %w", err)
	}
	lockPath := filepath.Join(parent, base+".lock")
	unlock, err := lockFile(ctx, lockPath, func() {
		_, _ = fmt.Fprintf(log, "kubetest: another process is building the control plane into %s; waiting for it (lock %s)\n", dir, lockPath)
	})
	if err != nil {
		return fmt.Errorf("lock %s: %w", lockPath, err)
	}
	defer unlock()
	if complete(dir) { // built while this caller waited
		return nil
	}
	if err := clearStale(parent, base, dir); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, base+".tmp-")
	if err != nil {
		return fmt.Errorf("control-plane cache: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // gone by then when the build was kept
	start := time.Now()
	_, _ = fmt.Fprintf(log, "kubetest: building the control plane %s into %s (first use: ~8 minutes on 2 cores; not counted in the test timeout)\n", Version, dir)
	if err := build(ctx, tmp); err != nil {
		return fmt.Errorf("build the control plane: %w", err)
	}
	if missing := missingFrom(tmp); len(missing) > 0 {
		return fmt.Errorf("build the control plane: the build left out %s", strings.Join(missing, ", "))
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("control-plane cache: %w", err)
	}
	_, _ = fmt.Fprintf(log, "kubetest: control plane built in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// clearStale removes, under the lock, what an interrupted build left: temporary
// directories (a build in progress holds the lock, so these are dead), and a dir
// that holds some of the binaries and nothing else (the copy-in-place of an older
// build script, interrupted). A dir holding anything else is not ours to remove.
func clearStale(parent, base, dir string) error {
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
		return fmt.Errorf("control-plane cache: %w", err)
	}
	for _, e := range entries {
		if !slices.Contains(binaryNames, e.Name()) {
			return fmt.Errorf("control-plane cache %s exists without %s and holds %s: remove it or set AUTOFIX_K8S_BIN elsewhere",
				dir, strings.Join(missingFrom(dir), ", "), e.Name())
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove an incomplete control-plane cache: %w", err)
	}
	return nil
}

// complete reports whether dir holds every binary.
func complete(dir string) bool { return len(missingFrom(dir)) == 0 }

// missingFrom lists the binaries dir lacks (or holds but not as executables).
func missingFrom(dir string) []string {
	var missing []string
	for _, b := range binaryNames {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// buildScript builds with the repository's test/cluster/build.sh, its output on
// stderr.
func buildScript(ctx context.Context, dir string) error {
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/autofix/autofix").Output()
	if err != nil {
		return fmt.Errorf("find the module root: %w", err)
	}
	script := filepath.Join(strings.TrimSpace(string(root)), "test", "cluster", "build.sh")
	cmd := exec.CommandContext(ctx, script, dir) // #nosec G204 -- the repository's own build script
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", script, err)
	}
	return nil
}

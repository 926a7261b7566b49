package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The versions of the JobSet and Kueue controllers the tests run: the ones
// internal/kubetest/controllers/go.mod names as tools (a unit test holds them
// equal). The controllers' cache directory is named after them.
const (
	JobSetVersion = "v0.12.0"
	KueueVersion  = "v0.19.2"
)

// The controllers' Go modules and the main packages built from them.
const (
	jobSetModule  = "sigs.k8s.io/jobset"
	kueueModule   = "sigs.k8s.io/kueue"
	jobSetPackage = "sigs.k8s.io/jobset"
	kueuePackage  = "sigs.k8s.io/kueue/cmd/kueue"
	// controllersModuleDir is the tools module, from the main module's root.
	controllersModuleDir = "internal/kubetest/controllers"
)

// controllerSet is the controllers' set of binaries.
var controllerSet = binSet{what: "the JobSet and Kueue controllers",
	names: []string{"jobset-controller", "kueue-controller"},
	took:  "~8 minutes on 2 cores", env: "AUTOFIX_CONTROLLERS_BIN",
	cache: "controllers-" + JobSetVersion + "-" + KueueVersion}

// Controllers is where the JobSet and Kueue controllers and their manifests are.
type Controllers struct {
	// Bin holds jobset-controller and kueue-controller.
	Bin string
	// JobSetSource and KueueSource are the modules' directories in the module cache
	// (read-only): their config/components/crd/bases and config/components/webhook
	// hold the CRDs and webhook configurations the tests install.
	JobSetSource, KueueSource string
}

// ControllersDir is where the controllers' binaries are kept: $AUTOFIX_CONTROLLERS_BIN,
// or controllers-<JobSetVersion>-<KueueVersion> under the user's cache directory
// ($XDG_CACHE_HOME or ~/.cache), beside the control plane.
func ControllersDir() (string, error) { return controllerSet.dir() }

// EnsureControllers returns where the JobSet and Kueue controllers and their
// manifests are, downloading the modules and building the binaries first if they are
// not there (minutes, the first time). As EnsureBinaries does, it builds in a child
// process (go run ./internal/kubetest/cmd/controllers, which runs BuildControllers)
// that finishes the build even if this process is killed meanwhile.
func EnsureControllers(ctx context.Context, log io.Writer) (*Controllers, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	c, err := controllerSources(ctx, root)
	if err != nil {
		return nil, err
	}
	if c.Bin, err = ControllersDir(); err != nil {
		return nil, err
	}
	if controllerSet.complete(c.Bin) {
		return c, nil
	}
	cmd := exec.Command("go", "run", "./internal/kubetest/cmd/controllers") // #nosec G204 -- the repository's own command
	cmd.Dir, cmd.Stderr = root, log
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go run ./internal/kubetest/cmd/controllers: %w", err)
	}
	if got := strings.TrimSpace(string(out)); got != c.Bin {
		return nil, fmt.Errorf("./internal/kubetest/cmd/controllers built into %s, want %s", got, c.Bin)
	}
	return c, nil
}

// BuildControllers is EnsureControllers in this process: it builds the controllers,
// if they are not there, from internal/kubetest/controllers (go build -C that
// directory, stripped), and returns their directory.
func BuildControllers(ctx context.Context, log io.Writer) (string, error) {
	dir, err := ControllersDir()
	if err != nil {
		return "", err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	tools := filepath.Join(root, controllersModuleDir)
	return dir, controllerSet.ensure(ctx, dir, func(ctx context.Context, tmp string) error {
		for _, b := range []struct{ out, pkg string }{
			{"jobset-controller", jobSetPackage}, {"kueue-controller", kueuePackage},
		} {
			if err := goCommand(ctx, tools, log, "build", "-ldflags", "-s -w", "-o", filepath.Join(tmp, b.out), b.pkg); err != nil {
				return err
			}
		}
		return nil
	}, log)
}

// controllerSources downloads the controllers' modules (a no-op once they are in
// the module cache) and returns their directories, checking that the tools module
// names the versions the cache directory is named after.
func controllerSources(ctx context.Context, root string) (*Controllers, error) {
	var out bytes.Buffer
	tools := filepath.Join(root, controllersModuleDir)
	if err := goCommand(ctx, tools, &out, "mod", "download", "-json", jobSetModule, kueueModule); err != nil {
		return nil, fmt.Errorf("%w: %s", err, tailBytes(out.Bytes(), 2048))
	}
	want := map[string]string{jobSetModule: JobSetVersion, kueueModule: KueueVersion}
	dirs := map[string]string{}
	dec := json.NewDecoder(&out)
	for {
		var m struct{ Path, Version, Dir, Error string }
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go mod download -json in %s: %w", tools, err)
		}
		if m.Error != "" {
			return nil, fmt.Errorf("download %s: %s", m.Path, m.Error)
		}
		if m.Version != want[m.Path] {
			return nil, fmt.Errorf("%s/go.mod requires %s %s, kubetest's constant says %s: change both",
				controllersModuleDir, m.Path, m.Version, want[m.Path])
		}
		dirs[m.Path] = m.Dir
	}
	for mod := range want {
		if dirs[mod] == "" {
			return nil, fmt.Errorf("go mod download in %s: no directory for %s", tools, mod)
		}
	}
	return &Controllers{JobSetSource: dirs[jobSetModule], KueueSource: dirs[kueueModule]}, nil
}

// goCommand runs the go command in dir, outside any workspace, its output to out.
func goCommand(ctx context.Context, dir string, out io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...) // #nosec G204 -- fixed arguments
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s (in %s): %w", strings.Join(args, " "), dir, err)
	}
	return nil
}

// moduleRoot is the main module's directory.
func moduleRoot(ctx context.Context) (string, error) {
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/autofix/autofix").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root: %w", err)
	}
	return strings.TrimSpace(string(root)), nil
}

var (
	controllersOnce   sync.Once
	controllersCached *Controllers
	errControllers    error
)

// controllers returns the controllers (EnsureControllers), once per test binary:
// building them, when they are not cached, takes minutes (call MainWithControllers
// from TestMain to build them before the test timeout starts).
func controllers(t testing.TB) *Controllers {
	t.Helper()
	controllersOnce.Do(func() {
		controllersCached, errControllers = EnsureControllers(context.Background(), os.Stderr)
	})
	if errControllers != nil {
		t.Fatal(errControllers)
	}
	return controllersCached
}

// MainWithControllers is Main for a package whose tests run the JobSet or Kueue
// controllers: it builds them too, when they are not cached, before m.Run.
func MainWithControllers(m *testing.M, after ...func()) {
	runMain(m, func() error {
		controllersOnce.Do(func() {
			controllersCached, errControllers = EnsureControllers(context.Background(), os.Stderr)
		})
		return errControllers
	}, after)
}

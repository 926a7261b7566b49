// Package kubetest runs a real Kubernetes control plane for integration tests: etcd,
// kube-apiserver (RBAC on) and kube-controller-manager with the real Job, Deployment
// and ReplicaSet controllers, from binaries built from Go modules once and cached
// (EnsureBinaries, Main). There is no kubelet and no scheduler: Kubelet, a small
// test agent, binds pods to a node and moves them to Running and then Succeeded or
// Failed as the test's ground truth says.
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/autofix/autofix/internal/testwait"
)

// Cluster is a running control plane.
type Cluster struct {
	Dir        string
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	// Dynamic reaches the custom resources (JobSets, Kueue's objects).
	Dynamic dynamic.Interface
	// Bin is where the control-plane binaries are (kubectl among them).
	Bin string
}

const adminToken = "autofix-test-admin" // #nosec G101 -- a throwaway test cluster's token

// Start starts a control plane for the test and stops it when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := binaries(t)
	dir := t.TempDir()
	c := &Cluster{Dir: dir, Bin: bin}
	etcdPort, etcdPeer, apiPort := freePort(t), freePort(t), freePort(t)
	c.run(t, "etcd", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", url("http", etcdPort), "--advertise-client-urls", url("http", etcdPort),
		"--listen-peer-urls", url("http", etcdPeer), "--initial-advertise-peer-urls", url("http", etcdPeer),
		"--initial-cluster", "default="+url("http", etcdPeer), "--unsafe-no-fsync", "--log-level", "warn")

	priv, pub := saKeys(t, dir)
	tokens := filepath.Join(dir, "tokens.csv")
	write(t, tokens, adminToken+",admin,admin,system:masters\n")
	c.run(t, "kube-apiserver", "--etcd-servers", url("http", etcdPort),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--endpoint-reconciler-type", "none",
		"--secure-port", strconv.Itoa(apiPort), "--cert-dir", filepath.Join(dir, "certs"),
		"--service-cluster-ip-range", "10.0.0.0/24", "--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", pub, "--service-account-signing-key-file", priv,
		"--token-auth-file", tokens, "--authorization-mode", "RBAC", "--enable-priority-and-fairness=false")

	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	write(t, c.Kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:%d", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %s}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
`, apiPort, adminToken))
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	c.Config = cfg
	c.Client = kubernetes.NewForConfigOrDie(cfg)
	c.Dynamic = dynamic.NewForConfigOrDie(cfg)
	c.waitReady(t)

	c.run(t, "kube-controller-manager", "--kubeconfig", c.Kubeconfig, "--secure-port", "0", "--leader-elect=false",
		"--controllers", "job-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,"+
			"deployment-controller,replicaset-controller,ttl-after-finished-controller,pod-garbage-collector-controller",
		"--concurrent-job-syncs", "10")
	return c
}

// binaries returns the directory of the control-plane binaries, building them when
// they are not cached (minutes, the first time: call Main from TestMain to build
// before the test timeout starts).
func binaries(t testing.TB) string {
	t.Helper()
	dir, err := EnsureBinaries(context.Background(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Main runs a test package's tests once the control plane is built: call it from
// the package's TestMain. A build, when one is needed, runs before m.Run, so the
// test binary's own timeout (go test -timeout, 10 minutes by default) does not
// count it; go test's backstop, one minute past that timeout, still does. after runs
// once the tests are done: the package's own clean-up.
func Main(m *testing.M, after ...func()) { runMain(m, nil, after) }

// runMain is Main, with more to make ready (when not nil) before m.Run.
func runMain(m *testing.M, ready func() error, after []func()) {
	if _, err := EnsureBinaries(context.Background(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kubetest:", err)
		os.Exit(1)
	}
	if ready != nil {
		if err := ready(); err != nil {
			fmt.Fprintln(os.Stderr, "kubetest:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	for _, f := range after {
		f()
	}
	os.Exit(code)
}

func (c *Cluster) run(t testing.TB, name string, args ...string) {
	t.Helper()
	c.start(t, name, exec.Command(filepath.Join(c.Bin, name), args...)) // #nosec G204 -- the test's own binaries
}

// process is a program a test started; it is stopped when the test ends.
type process struct {
	name, log string
	done      chan struct{} // closed once it has exited
	err       error         // how it exited, once done is closed
}

// exited reports how the process ended, or nil while it runs.
func (p *process) exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return fmt.Errorf("%s exited (log %s)", p.name, p.log)
		}
		return fmt.Errorf("%s exited: %w (log %s)", p.name, p.err, p.log)
	default:
		return nil
	}
}

// start runs cmd, its output to name.log in the test's directory, until the test
// ends; when the test failed, the log's tail is shown then.
func (c *Cluster) start(t testing.TB, name string, cmd *exec.Cmd) *process {
	t.Helper()
	log, err := os.Create(filepath.Join(c.Dir, name+".log")) // #nosec G703 -- a test's temporary directory
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, log: log.Name(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		_ = log.Close()
		if t.Failed() {
			if b, err := os.ReadFile(log.Name()); err == nil {
				t.Logf("%s log (last 4 KiB):\n%s", name, tailBytes(b, 4096))
			}
		}
	})
	return p
}

// waitReady asks the API server's /readyz until it answers ok, for as long as the
// test may run (go test's -timeout; 10 minutes without one): how long etcd and the
// API server take to start depends on the machine, and a limit of the test's own
// would be a timing threshold. Each try gets 2 s, and a try that fails is simply
// followed by another.
func (c *Cluster) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	if d, ok := t.(testwait.T); ok {
		if end, ok := testwait.Deadline(d); ok {
			deadline = end
		}
	}
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("kube-apiserver not ready by the test's deadline: %v", last)
}

// Kubectl runs the built kubectl against the cluster.
func (c *Cluster) Kubectl(args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.Bin, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...) // #nosec G204
	return cmd.CombinedOutput()
}

func saKeys(t testing.TB, dir string) (priv, pub string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	write(t, priv, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
	write(t, pub, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})))
	return priv, pub
}

func write(t testing.TB, path, data string) {
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil { // #nosec G703 -- a file in the test's own directory
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

func url(scheme string, port int) string { return fmt.Sprintf("%s://127.0.0.1:%d", scheme, port) }

func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

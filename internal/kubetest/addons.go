package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/autofix/autofix/internal/testpki"
	"github.com/autofix/autofix/internal/testwait"
)

// Controller is a controller process a test started (StartJobSet, StartKueue); it
// is stopped when the test ends.
type Controller struct {
	// Name is its binary's name: "jobset-controller", "kueue-controller".
	Name string
	// Log is the file its output goes to, in the test's directory; its tail is
	// shown when the test fails.
	Log string
	// WebhookURL is where its webhook server listens: https://127.0.0.1:PORT.
	WebhookURL string
}

// crdGVR is the resource of CustomResourceDefinitions.
var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// maxManifest bounds a manifest file read from the module cache, in bytes (Kueue's
// largest CRD is about 1 MB).
const maxManifest = 16 << 20

// InstallCRDs creates the CustomResourceDefinitions in the YAML files (one or more
// documents each) and waits until the API server serves each (Established): a
// controller started before that may exit on "no matches for kind".
func (c *Cluster) InstallCRDs(t testwait.T, files ...string) {
	t.Helper()
	ctx := testwait.Context(t)
	var names []string
	for _, f := range files {
		docs, err := readManifest(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docs {
			crd := &unstructured.Unstructured{}
			if err := crd.UnmarshalJSON(doc); err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if crd.GetKind() != "CustomResourceDefinition" {
				t.Fatalf("%s: document %d is a %s, not a CustomResourceDefinition", f, i, crd.GetKind())
			}
			if _, err := c.Dynamic.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create the CRD %s from %s: %v", crd.GetName(), f, err)
			}
			names = append(names, crd.GetName())
		}
	}
	for _, name := range names {
		c.Await(t, crdGVR, "", "the CRD "+name+" to be Established", func(u *unstructured.Unstructured) bool {
			return u.GetName() == name && conditionIs(u, "Established", "True")
		})
	}
}

// Await watches the objects of gvr in namespace ("" for all, or a cluster-scoped
// resource) until one matches, as long as the test may run, and returns it; at the
// test's deadline it fails the test, saying what it waited for.
func (c *Cluster) Await(t testwait.T, gvr schema.GroupVersionResource, namespace, what string, match func(*unstructured.Unstructured) bool) *unstructured.Unstructured {
	t.Helper()
	res := c.Dynamic.Resource(gvr).Namespace(namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return res.Watch(ctx, o)
		},
	}
	var found *unstructured.Unstructured
	_, err := watchtools.UntilWithSync(testwait.Context(t), lw, &unstructured.Unstructured{}, nil, func(ev watch.Event) (bool, error) {
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok || ev.Type == watch.Deleted || !match(u) {
			return false, nil
		}
		found = u
		return true, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return found
}

// conditionIs reports whether the object's status has the condition with status
// ("True", "False").
func conditionIs(u *unstructured.Unstructured, condition, status string) bool {
	_, ok := Condition(u, condition, status)
	return ok
}

// Condition returns the message of the object's status condition of that type when
// its status is status ("True", "False"); ok is false when it has none such.
func Condition(u *unstructured.Unstructured, condition, status string) (message string, ok bool) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == condition && m["status"] == status {
			msg, _ := m["message"].(string)
			return msg, true
		}
	}
	return "", false
}

// readManifest reads a YAML file's documents, each as JSON; empty documents are
// left out.
func readManifest(path string) ([][]byte, error) {
	b, err := readManifestBytes(path)
	if err != nil {
		return nil, err
	}
	return splitYAML(path, b)
}

// readManifestBytes reads a manifest file, up to maxManifest bytes.
func readManifestBytes(path string) ([]byte, error) {
	f, err := os.Open(path) // #nosec G304 -- a manifest of the module cache
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxManifest)
	}
	return b, nil
}

// splitYAML splits a YAML stream into its non-empty documents, each as JSON.
func splitYAML(name string, b []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		j, err := utilyaml.ToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, len(docs), err)
		}
		if string(j) == "null" {
			continue // only comments or a bare "---"
		}
		docs = append(docs, j)
	}
}

// webhookCert is a webhook server's certificate for 127.0.0.1 (the API server calls
// the webhooks by URL), in dir as tls.crt and tls.key, the names controller-runtime's
// webhook server reads, from a throwaway CA of the test's.
type webhookCert struct {
	dir string
	ca  []byte // the CA's certificate in PEM: the caBundle
}

// newWebhookCert makes a webhook certificate in dir.
func newWebhookCert(t testing.TB, dir string) *webhookCert {
	t.Helper()
	ca := testpki.NewCA(t, "webhook-ca")
	leaf := ca.Server(t, "webhook")
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{leaf.CertFile: "tls.crt", leaf.KeyFile: "tls.key"} {
		b, err := os.ReadFile(from) // #nosec G304 -- testpki's file in the test's directory
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, to), string(b))
	}
	return &webhookCert{dir: dir, ca: caPEM}
}

// awaitServing waits until the webhook server at url answers TLS with cert (any
// HTTP status will do: it listens), failing the test at its deadline or as soon as
// the process has exited.
func awaitServing(t testwait.T, p *process, url string, cert *webhookCert) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cert.ca)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	poll(t, p, p.name+"'s webhook server at "+url, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		return nil
	})
}

// poll calls try until it returns nil, as long as the test may run and p runs (p
// may be nil): for what nothing signals, another process's state. At the test's
// deadline, or when p has exited, it fails the test with try's last error.
func poll(t testwait.T, p *process, what string, try func(ctx context.Context) error) {
	t.Helper()
	ctx := testwait.Context(t)
	var last error
	for {
		if p != nil {
			if err := p.exited(); err != nil {
				t.Fatalf("waiting for %s: %v (last try: %v)", what, err, last)
			}
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = try(tctx)
		cancel()
		if last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s at the test's deadline: %v", what, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

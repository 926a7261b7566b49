package kubetest

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// manifest is the shape of a kubebuilder-generated webhook manifest.
const manifest = `---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: mutating-webhook-configuration
webhooks:
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /mutate-jobset}
  failurePolicy: Fail
  name: mjobset.kb.io
  rules:
  - {apiGroups: [jobset.x-k8s.io], apiVersions: [v1alpha2], operations: [CREATE], resources: [jobsets]}
  sideEffects: None
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /mutate--v1-pod}
  failurePolicy: Fail
  name: mpod.kb.io
  namespaceSelector: {matchLabels: {team: a}}
  rules:
  - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  sideEffects: None
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /mutate-apps-v1-deployment}
  name: mdeployment.kb.io
  rules:
  - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}
  sideEffects: None
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: validating-webhook-configuration
webhooks:
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /validate-apps-v1-deployment}
  name: vdeployment.kb.io
  rules:
  - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}
  sideEffects: None
`

// TestWebhookConfigs: the webhooks of the scope's API groups are kept, called by URL
// with the CA bundle, and take the scope's selectors; the others are left out, and
// a configuration left with none is not registered at all.
func TestWebhookConfigs(t *testing.T) {
	podsOfJobSets := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: jobSetNameLabel, Operator: metav1.LabelSelectorOpExists}}}
	mutating, validating, err := webhookConfigs("m.yaml", []byte(manifest), "test-jobset", "https://127.0.0.1:9443",
		[]byte("CA"), webhookScope{"jobset.x-k8s.io": {}, "": {object: podsOfJobSets}})
	if err != nil {
		t.Fatal(err)
	}
	if len(validating) != 0 {
		t.Errorf("validating configurations = %d, want none (its only webhook is out of scope)", len(validating))
	}
	if len(mutating) != 1 {
		t.Fatalf("mutating configurations = %d, want 1", len(mutating))
	}
	cfg := mutating[0]
	if cfg.Name != "test-jobset-mutating-webhook-configuration" {
		t.Errorf("name = %q, want test-jobset-mutating-webhook-configuration", cfg.Name)
	}
	var names []string
	for _, w := range cfg.Webhooks {
		names = append(names, w.Name)
	}
	if got, want := strings.Join(names, ","), "mjobset.kb.io,mpod.kb.io"; got != want {
		t.Fatalf("webhooks = %s, want %s", got, want)
	}
	for i, wantURL := range []string{"https://127.0.0.1:9443/mutate-jobset", "https://127.0.0.1:9443/mutate--v1-pod"} {
		cc := cfg.Webhooks[i].ClientConfig
		if cc.Service != nil || cc.URL == nil || *cc.URL != wantURL || string(cc.CABundle) != "CA" {
			t.Errorf("webhooks[%d].clientConfig = %+v, want url %s and the CA bundle, no service", i, cc, wantURL)
		}
	}
	if got := cfg.Webhooks[0].ObjectSelector; got != nil {
		t.Errorf("the JobSet webhook's objectSelector = %v, want none", got)
	}
	if got := cfg.Webhooks[1].ObjectSelector; got == nil || len(got.MatchExpressions) != 1 || got.MatchExpressions[0].Key != jobSetNameLabel {
		t.Errorf("the pod webhook's objectSelector = %v, want %s Exists", got, jobSetNameLabel)
	}
	if got := cfg.Webhooks[1].NamespaceSelector; got == nil || got.MatchLabels["team"] != "a" {
		t.Errorf("the pod webhook's namespaceSelector = %v, want the manifest's kept (the scope sets none)", got)
	}
	if *cfg.Webhooks[0].FailurePolicy != admissionv1.Fail {
		t.Errorf("failurePolicy = %v, want the manifest's Fail", *cfg.Webhooks[0].FailurePolicy)
	}
}

// TestWebhookConfigsRejects: a manifest the rewrite cannot follow is an error naming
// where, never a configuration that calls nothing.
func TestWebhookConfigsRejects(t *testing.T) {
	for _, tc := range []struct{ name, manifest, wantErr string }{
		{"a webhook without a service path", `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: v}
webhooks:
- name: vjob.kb.io
  clientConfig: {url: "https://elsewhere"}
  rules: [{apiGroups: [batch], apiVersions: [v1], operations: [CREATE], resources: [jobs]}]
`, "v: webhooks[vjob.kb.io]: clientConfig.service.path: missing"},
		{"another kind", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", `document 0 is a "Service"`},
		{"not YAML", "webhooks: [\n", "m.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := webhookConfigs("m.yaml", []byte(tc.manifest), "p", "https://127.0.0.1:1", nil, webhookScope{"batch": {}})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("webhookConfigs() = %v, want an error saying %q", err, tc.wantErr)
			}
		})
	}
}

// TestWebhookCertServes127001: a server with tls.crt and tls.key is trusted, at
// 127.0.0.1, by a client whose only root is the caBundle: what the API server does.
func TestWebhookCertServes127001(t *testing.T) {
	cert := newWebhookCert(t, filepath.Join(t.TempDir(), "certs"))
	pair, err := tls.LoadX509KeyPair(filepath.Join(cert.dir, "tls.crt"), filepath.Join(cert.dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cert.ca) {
		t.Fatal("the caBundle is not a PEM certificate")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get(srv.URL) // https://127.0.0.1:PORT
	if err != nil {
		t.Fatalf("GET %s with the caBundle as the only root: %v", srv.URL, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("status = %d, want %d", resp.StatusCode, http.StatusTeapot)
	}
}

// TestControllerVersionsAreTheBuiltOnes: the controllers' cache is keyed by the
// versions internal/kubetest/controllers builds.
func TestControllerVersionsAreTheBuiltOnes(t *testing.T) {
	b, err := os.ReadFile("controllers/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{jobSetModule + " " + JobSetVersion + " ", kueueModule + " " + KueueVersion + " ",
		"\t" + jobSetPackage + "\n", "\t" + kueuePackage + "\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("controllers/go.mod does not hold %q: the cache directory would be named for another version, or the build name another package", strings.TrimSpace(want))
		}
	}
}

// TestSplitYAML: documents come out as JSON, empty ones and comments left out.
func TestSplitYAML(t *testing.T) {
	docs, err := splitYAML("x.yaml", []byte("# header\n---\na: 1\n---\n---\n# only a comment\n---\nb: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(func() []string {
		var s []string
		for _, d := range docs {
			s = append(s, string(d))
		}
		return s
	}(), " "), `{"a":1} {"b":["x"]}`; got != want {
		t.Errorf("splitYAML() = %s, want %s", got, want)
	}
}

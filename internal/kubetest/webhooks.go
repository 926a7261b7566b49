package kubetest

import (
	"context"
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/internal/testwait"
)

// webhookScope says which of a controller's webhooks are registered and over what.
// A webhook is kept when one of its rules names an API group of the map ("" is the
// core group: pods), and takes that group's selectors where they are set.
type webhookScope map[string]selectors

// selectors narrow a webhook to some namespaces or objects, as a release manifest
// (kustomize overlays) does to the generated ones.
type selectors struct {
	namespace, object *metav1.LabelSelector
}

// webhookConfigs turns a controller's generated webhook manifest (kubebuilder's
// config/components/webhook/manifests.yaml: clientConfig.service) into
// configurations the API server calls by URL: clientConfig.url is baseURL and the
// webhook's path, caBundle the serving certificate. The configurations are named
// prefix-<name>; those left with no webhook are left out.
func webhookConfigs(name string, manifest []byte, prefix, baseURL string, caBundle []byte, scope webhookScope) (
	[]*admissionv1.MutatingWebhookConfiguration, []*admissionv1.ValidatingWebhookConfiguration, error) {
	docs, err := splitYAML(name, manifest)
	if err != nil {
		return nil, nil, err
	}
	var (
		mutating   []*admissionv1.MutatingWebhookConfiguration
		validating []*admissionv1.ValidatingWebhookConfiguration
	)
	for i, doc := range docs {
		var meta metav1.TypeMeta
		if err := json.Unmarshal(doc, &meta); err != nil {
			return nil, nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		switch meta.Kind {
		case "MutatingWebhookConfiguration":
			var cfg admissionv1.MutatingWebhookConfiguration
			if err := json.Unmarshal(doc, &cfg); err != nil {
				return nil, nil, fmt.Errorf("%s: document %d: %w", name, i, err)
			}
			if cfg.Webhooks, err = fitted(cfg.Webhooks, func(w *admissionv1.MutatingWebhook) webhookParts {
				return webhookParts{w.Name, w.Rules, &w.ClientConfig, &w.NamespaceSelector, &w.ObjectSelector}
			}, scope, baseURL, caBundle); err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", name, cfg.Name, err)
			}
			if len(cfg.Webhooks) > 0 {
				cfg.Name = prefix + "-" + cfg.Name
				mutating = append(mutating, &cfg)
			}
		case "ValidatingWebhookConfiguration":
			var cfg admissionv1.ValidatingWebhookConfiguration
			if err := json.Unmarshal(doc, &cfg); err != nil {
				return nil, nil, fmt.Errorf("%s: document %d: %w", name, i, err)
			}
			if cfg.Webhooks, err = fitted(cfg.Webhooks, func(w *admissionv1.ValidatingWebhook) webhookParts {
				return webhookParts{w.Name, w.Rules, &w.ClientConfig, &w.NamespaceSelector, &w.ObjectSelector}
			}, scope, baseURL, caBundle); err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", name, cfg.Name, err)
			}
			if len(cfg.Webhooks) > 0 {
				cfg.Name = prefix + "-" + cfg.Name
				validating = append(validating, &cfg)
			}
		default:
			return nil, nil, fmt.Errorf("%s: document %d is a %q, not a webhook configuration", name, i, meta.Kind)
		}
	}
	return mutating, validating, nil
}

// of returns the selectors of the first API group of rules that the scope holds;
// ok is false when it holds none of them.
func (s webhookScope) of(rules []admissionv1.RuleWithOperations) (selectors, bool) {
	for _, r := range rules {
		for _, g := range r.APIGroups {
			if sel, ok := s[g]; ok {
				return sel, true
			}
		}
	}
	return selectors{}, false
}

// webhookParts are the fields of a mutating or validating webhook that fitting it
// to a scope reads or sets.
type webhookParts struct {
	name              string
	rules             []admissionv1.RuleWithOperations
	clientConfig      *admissionv1.WebhookClientConfig
	namespace, object **metav1.LabelSelector
}

// fitted returns the webhooks whose rules name an API group of the scope, each
// calling baseURL (byURL) and taking the group's selectors where they are set.
func fitted[W any](webhooks []W, parts func(*W) webhookParts, scope webhookScope, baseURL string, caBundle []byte) ([]W, error) {
	var kept []W
	for i := range webhooks {
		p := parts(&webhooks[i])
		sel, ok := scope.of(p.rules)
		if !ok {
			continue
		}
		if err := byURL(p.clientConfig, baseURL, caBundle); err != nil {
			return nil, fmt.Errorf("webhooks[%s]: %w", p.name, err)
		}
		if sel.namespace != nil {
			*p.namespace = sel.namespace.DeepCopy()
		}
		if sel.object != nil {
			*p.object = sel.object.DeepCopy()
		}
		kept = append(kept, webhooks[i])
	}
	return kept, nil
}

// byURL points a webhook's client configuration at baseURL and its service's path.
func byURL(cc *admissionv1.WebhookClientConfig, baseURL string, caBundle []byte) error {
	if cc.Service == nil || cc.Service.Path == nil {
		return fmt.Errorf("clientConfig.service.path: missing")
	}
	u := baseURL + *cc.Service.Path
	*cc = admissionv1.WebhookClientConfig{URL: &u, CABundle: caBundle}
	return nil
}

// registerWebhooks creates the webhook configurations of a manifest (webhookConfigs)
// and deletes them when the test ends, before the controller serving them stops.
func (c *Cluster) registerWebhooks(t testwait.T, manifest, prefix, baseURL string, cert *webhookCert, scope webhookScope) {
	t.Helper()
	b, err := readManifestBytes(manifest)
	if err != nil {
		t.Fatal(err)
	}
	mutating, validating, err := webhookConfigs(manifest, b, prefix, baseURL, cert.ca, scope)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testwait.Context(t)
	api := c.Client.AdmissionregistrationV1()
	for _, cfg := range validating {
		if _, err := api.ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", cfg.Name, err)
		}
		t.Cleanup(func() {
			err := api.ValidatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Logf("delete %s: %v", cfg.Name, err)
			}
		})
	}
	for _, cfg := range mutating {
		if _, err := api.MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", cfg.Name, err)
		}
		t.Cleanup(func() {
			err := api.MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Logf("delete %s: %v", cfg.Name, err)
			}
		})
	}
}

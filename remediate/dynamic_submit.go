package remediate

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// dynamicAttempts creates the attempts of a kind autofix writes as unstructured
// objects (RayJobs, Workflows) through rc; kind names it in errors ("RayJob").
type dynamicAttempts struct {
	rc   dynamic.NamespaceableResourceInterface
	kind string
}

// created reports whether sub's attempt exists and is autofix's for its remediation
// (Adapter.Created); an object of that name that is not is ErrCannotSubmit.
func (d dynamicAttempts) created(ctx context.Context, sub *Submission) (bool, error) {
	got, err := d.rc.Namespace(sub.Namespace).Get(ctx, sub.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, classify(fmt.Errorf("look for %s %s/%s: %w", d.kind, sub.Namespace, sub.Name, err))
	case isAttempt(got, sub):
		return true, nil
	}
	return false, fmt.Errorf("a %s %s/%s exists that autofix did not create for remediation %s: %w",
		d.kind, sub.Namespace, sub.Name, sub.Remediation, ErrCannotSubmit)
}

// create creates attempt for sub; one of its name that is autofix's for this
// remediation is the attempt, created before.
func (d dynamicAttempts) create(ctx context.Context, sub *Submission, attempt *unstructured.Unstructured) error {
	_, err := d.rc.Namespace(sub.Namespace).Create(ctx, attempt, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		if done, err := d.created(ctx, sub); done || err != nil {
			return err
		}
	}
	if err != nil {
		return classify(fmt.Errorf("create %s %s/%s: %w", d.kind, sub.Namespace, sub.Name, err))
	}
	return nil
}

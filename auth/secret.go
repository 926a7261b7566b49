package auth

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// minSecretLen is the shortest secret a Secret may hold, in bytes: an operator may
// write their own there, and a short one could be guessed from its unsalted hash.
// autofix's own are 47.
const minSecretLen = 32

// FromSecret reads tokens from the Kubernetes Secret namespace/name: each data key is
// a token's name, its value "<role>:<secret>" (surrounding white space ignored, as an
// HTTP header would drop it). Only the hashes are kept. Errors name the key at fault,
// never its value; a missing Secret is the API's NotFound error, wrapped, for the
// caller to tell apart with apierrors.IsNotFound.
func FromSecret(ctx context.Context, kube kubernetes.Interface, namespace, name string) ([]Token, error) {
	sec, err := kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", namespace, name, err)
	}
	tokens := make([]Token, 0, len(sec.Data))
	for _, key := range slices.Sorted(maps.Keys(sec.Data)) {
		t, err := parseSecretValue(key, sec.Data[key])
		if err != nil {
			return nil, fmt.Errorf("secret %s/%s: %w", namespace, name, err)
		}
		t.Created = sec.CreationTimestamp.UTC()
		tokens = append(tokens, t)
	}
	return tokens, nil
}

// parseSecretValue turns one entry of the Secret into a token. Its errors name the
// key and never repeat any part of the value: a value without a valid role may be a
// bare secret, and its "role" a piece of it.
func parseSecretValue(key string, value []byte) (Token, error) {
	if !validName(key) {
		return Token{}, fmt.Errorf("key %q: a token name must be %s", key, nameRule)
	}
	roleStr, secret, ok := strings.Cut(strings.TrimSpace(string(value)), ":")
	if !ok {
		return Token{}, fmt.Errorf("key %q: want the value <role>:<secret>, found no ':'", key)
	}
	role := Role(roleStr)
	if role.rank() == 0 {
		return Token{}, fmt.Errorf("key %q: the role before ':' is not viewer, approver or admin", key)
	}
	if len(secret) < minSecretLen {
		return Token{}, fmt.Errorf("key %q: the secret after ':' is shorter than %d characters", key, minSecretLen)
	}
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; c <= ' ' || c > '~' {
			return Token{}, fmt.Errorf("key %q: the secret after ':' holds a character other than printable ASCII without spaces", key)
		}
	}
	return Token{Name: key, Role: role, Hash: hashSecret(secret)}, nil
}

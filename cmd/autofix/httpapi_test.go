package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/autofix/autofix/auth"
)

// TestTokenSourcesRevoke: the Secret's tokens go when it is deleted, and when it has
// been unreadable for too long — whatever the token file does.
func TestTokenSourcesRevoke(t *testing.T) {
	dir := t.TempDir()
	store, err := auth.OpenStore(filepath.Join(dir, auth.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create("local", auth.Viewer); err != nil {
		t.Fatal(err)
	}
	fromSecret := []auth.Token{{Name: "oncall", Role: auth.Approver, Hash: "00"}}
	var secretErr error
	src := &tokenSources{path: filepath.Join(dir, auth.StoreFile), log: slog.New(slog.DiscardHandler),
		secret: func(context.Context) ([]auth.Token, error) { return fromSecret, secretErr }}
	ctx := context.Background()
	names := func() []string {
		var out []string
		for _, tk := range src.tokens() {
			out = append(out, tk.Name)
		}
		return out
	}
	if err := src.reload(ctx, true); err != nil || len(names()) != 2 {
		t.Fatalf("first load: %v, %v", names(), err)
	}
	secretErr = errors.New("apiserver down")
	_ = src.reload(ctx, false)
	if len(names()) != 2 {
		t.Errorf("a Secret briefly unreadable: %v, want its tokens kept", names())
	}
	src.secretReadAt = time.Now().Add(-2 * staleTokens)
	_ = src.reload(ctx, false)
	if got := names(); len(got) != 1 || got[0] != "local" {
		t.Errorf("a Secret unreadable for too long: %v, want only the file's", got)
	}
	secretErr = nil
	_ = src.reload(ctx, false)
	secretErr = apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, "autofix-tokens")
	_ = src.reload(ctx, false)
	if got := names(); len(got) != 1 || got[0] != "local" {
		t.Errorf("a deleted Secret: %v, want only the file's", got)
	}
}

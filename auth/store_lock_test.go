package auth

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentChangesAreNotLost: many creates and revokes at once, each through
// its own Store opened before any of them ran (as separate `autofix token` processes
// would), end with exactly the tokens created and none of those revoked.
func TestConcurrentChangesAreNotLost(t *testing.T) {
	path := filepath.Join(t.TempDir(), StoreFile)
	const n = 24
	setup := openStore(t, path)
	var want []string
	for i := range n {
		if _, err := setup.Create(fmt.Sprintf("old-%02d", i), Viewer); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := setup.Create("keep", Admin); err != nil {
		t.Fatal(err)
	}
	want = append(want, "keep")
	stores := make([]*Store, 2*n)
	for i := range stores {
		stores[i] = openStore(t, path)
	}
	start := make(chan struct{})
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			<-start
			if i%2 == 0 {
				_, errs[i] = s.Create(fmt.Sprintf("new-%02d", i/2), Approver)
			} else {
				errs[i] = s.Revoke(fmt.Sprintf("old-%02d", i/2))
			}
		})
	}
	for i := range n {
		want = append(want, fmt.Sprintf("new-%02d", i))
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("change %d: %v", i, err)
		}
	}
	var got []string
	for _, tok := range openStore(t, path).List() {
		got = append(got, tok.Name)
	}
	slices.Sort(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("after %d concurrent creates and %d revokes the file holds\n%v\nwant\n%v", n, n, got, want)
	}
}

// TestFirstStartOnce: two first starts at once create one admin token, and the
// admin-token file holds its secret.
func TestFirstStartOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StoreFile)
	a, b := openStore(t, path), openStore(t, path)
	var (
		wg                 sync.WaitGroup
		createdA, createdB bool
		errA, errB         error
	)
	wg.Go(func() { _, createdA, errA = FirstStart(a, dir) })
	wg.Go(func() { _, createdB, errB = FirstStart(b, dir) })
	wg.Wait()
	if errA != nil || errB != nil || createdA == createdB {
		t.Fatalf("two first starts: created %v and %v (%v, %v), want exactly one", createdA, createdB, errA, errB)
	}
	if got := openStore(t, path).List(); len(got) != 1 || got[0].Name != "admin" {
		t.Errorf("tokens after two first starts: %+v, want the one admin", got)
	}
}

package boundedfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "token")
	if err := os.WriteFile(regular, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 2048), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want, wantErr string
	}{
		{name: "a regular file", path: regular, want: "s3cret\n"},
		{name: "a symlink to one, as a mounted Secret", path: link, want: "s3cret\n"},
		// Without the check, reading a FIFO nothing writes to blocks for ever.
		{name: "a FIFO", path: fifo, wantErr: "not a regular file"},
		{name: "a device", path: "/dev/zero", wantErr: "not a regular file"},
		{name: "over the bound", path: big, wantErr: "over the 1024-byte limit"},
		{name: "missing", path: filepath.Join(dir, "none"), wantErr: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(tc.path, 1024)
			switch {
			case tc.wantErr == "" && (err != nil || string(got) != tc.want):
				t.Errorf("Read = %q, %v; want %q", got, err, tc.want)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Read = %q, %v; want an error saying %q", got, err, tc.wantErr)
			}
		})
	}
}

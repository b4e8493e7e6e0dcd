package tlsauth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

func TestPrivateDir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	const secret = "-----BEGIN PRIVATE KEY-----\nCANARY-key-material-77\n-----END PRIVATE KEY-----\n"
	src := filepath.Join(base, "readable.key")
	if err := os.WriteFile(src, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link.key")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(base, "fifo.key")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(base, "big.key")
	if err := os.WriteFile(big, make([]byte, maxKeyFile+1), 0o644); err != nil {
		t.Fatal(err)
	}

	d, err := NewPrivateDir(base)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(d.Dir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("private dir: %v, mode %v; want 0700", err, fi.Mode())
	}
	cp, err := d.CopyKey(src, "client.key")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cp); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("copy: %v, mode %v; want 0600", err, fi.Mode())
	}
	if got, _ := os.ReadFile(cp); string(got) != secret {
		t.Errorf("copy holds %q, want the key", got)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"symbolic link", link, "too many levels of symbolic links"},
		{"fifo", fifo, "not a regular file"},
		{"too large", big, "larger than"},
		{"missing", filepath.Join(base, "none.key"), "no such file"},
	} {
		_, err := d.CopyKey(tc.path, "x.key")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("CopyKey(%s) = %v, want an error naming %s with %q", tc.name, err, tc.path, tc.want)
		}
		if errkind.Of(err) != errkind.BadInput {
			t.Errorf("CopyKey(%s) kind %v, want bad input", tc.name, errkind.Of(err))
		}
		if err != nil && strings.Contains(err.Error(), "CANARY") {
			t.Errorf("CopyKey(%s) error shows key material", tc.name)
		}
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("private dir still present after Remove")
	}
}

package tlsauth

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// maxKeyFile bounds a key file read into memory: a PEM key or chain is a
// few kilobytes.
const maxKeyFile = 1 << 20

// PrivateDir is a directory only the current user can enter (0700) that
// holds short-lived private copies (0600) of key material, for the CI front
// ends whose CI hands key material over in a form the custody check refuses:
// PEM content in a step input, or a GitLab "file" variable written under the
// runner's umask. The copies live only until the identity is loaded; Remove
// deletes them.
type PrivateDir struct{ dir string }

// NewPrivateDir creates a fresh private directory under base
// (os.TempDir() when empty).
func NewPrivateDir(base string) (*PrivateDir, error) {
	if base == "" {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "goproxy-setup-identity-")
	if err != nil {
		return nil, errkind.Mark(errkind.Local, fmt.Errorf("create a private directory for the client identity: %w", err))
	}
	// MkdirTemp already creates 0700; say it, whatever the umask.
	if err := os.Chmod(dir, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, errkind.Mark(errkind.Local, fmt.Errorf("create a private directory for the client identity: %w", err))
	}
	return &PrivateDir{dir: dir}, nil
}

// Dir returns the directory's path.
func (d *PrivateDir) Dir() string { return d.dir }

// Write writes data as name in the directory with mode 0600, atomically,
// and returns the file's path.
func (d *PrivateDir) Write(name string, data []byte) (string, error) {
	path := filepath.Join(d.dir, filepath.Base(name))
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return "", errkind.Mark(errkind.Local, fmt.Errorf("write a private copy of the client identity: %w", err))
	}
	return path, nil
}

// CopyKey copies the key file src into the directory as name (mode 0600)
// and returns the copy's path. It refuses a symbolic link and anything but a
// regular file, so a link planted in place of src cannot make it copy
// another file, and opens without blocking, so a FIFO cannot hang it.
// Errors name src, never its content.
func (d *PrivateDir) CopyKey(src, name string) (string, error) {
	f, err := os.OpenFile(src, os.O_RDONLY|openNoFollow, 0)
	if err != nil {
		return "", errkind.Mark(errkind.BadInput, fmt.Errorf("read client key %s: %w", src, err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", errkind.Mark(errkind.BadInput, fmt.Errorf("read client key %s: %w", src, err))
	}
	if !fi.Mode().IsRegular() {
		return "", errkind.Mark(errkind.BadInput, fmt.Errorf("client key %s is not a regular file (%s): pass the key file itself", src, fi.Mode().Type()))
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, maxKeyFile+1)); err != nil {
		return "", errkind.Mark(errkind.BadInput, fmt.Errorf("read client key %s: %w", src, err))
	}
	if b.Len() > maxKeyFile {
		return "", errkind.Mark(errkind.BadInput, fmt.Errorf("client key %s is larger than %d bytes: it is not a PEM key", src, maxKeyFile))
	}
	defer clear(b.Bytes())
	return d.Write(name, b.Bytes())
}

// Remove deletes the directory and every copy in it.
func (d *PrivateDir) Remove() error {
	if err := os.RemoveAll(d.dir); err != nil {
		return fmt.Errorf("remove the private copies of the client identity: %w", err)
	}
	return nil
}

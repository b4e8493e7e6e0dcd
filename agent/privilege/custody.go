package privilege

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Key copy names in the agent's private directory.
const (
	KeyFile  = "client.key"
	CertFile = "client.crt"
)

// TakeCustody is what the agent process, still root, does with the handoff
// before Drop: make dir u's private directory (PrepareDir) and write the
// client identity there (0600, u's), then zero the key in s. With no key in
// s only the directory is prepared.
func TakeCustody(dir string, s *Secrets, u *User) error {
	if err := PrepareDir(dir, u); err != nil {
		return err
	}
	if len(s.KeyPEM) == 0 {
		return nil
	}
	if err := WriteFile(dir, KeyFile, s.KeyPEM, u); err != nil {
		return err
	}
	if err := WriteFile(dir, CertFile, s.CertPEM, u); err != nil {
		return err
	}
	clear(s.KeyPEM)
	s.KeyPEM = nil
	return nil
}

// ReleaseCustody removes the key copies from dir: the agent, running as the
// directory's owner, calls it when it stops, so the key does not outlive
// the job. A missing file is not an error.
func ReleaseCustody(dir string) error {
	if dir == "" {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove key copies: %w", err)
	}
	defer root.Close()
	var errs []error
	for _, n := range []string{KeyFile, CertFile} {
		if err := root.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Join(dir, n), err))
		}
	}
	return errors.Join(errs...)
}

// RemoveAsRoot removes path and everything under it through 'sudo -n rm
// -rf' (rm does not follow a link it removes). It is how a job user with
// passwordless sudo removes the key copies a crashed agent left in a
// directory that belongs to the agent user.
func RemoveAsRoot(ctx context.Context, path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("remove %s as root: not an absolute path", path)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := execRunner(ctx, "sudo", "-n", "rm", "-rf", "--one-file-system", "--", path); err != nil {
		return fmt.Errorf("sudo -n rm -rf %s: %w: %s", path, err, out)
	}
	return nil
}

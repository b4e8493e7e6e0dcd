//go:build unix

package privilege

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// fileOwner returns the uid and gid that own the file st describes.
func fileOwner(st fs.FileInfo) (uid, gid int) {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid), int(sys.Gid)
	}
	return -1, -1
}

// lockPwd takes the account files' lock (shadow-utils' convention: a
// write lock on path), retrying for up to 15 s while another tool holds it.
func lockPwd(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open account lock: %w", err)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0}
	deadline := time.Now().Add(15 * time.Second)
	for {
		err = syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PrepareDir makes dir the agent's private directory: owned by u, mode 0700.
// dir must be absolute; missing parents are created 0755. An existing dir is
// accepted when it already is u's with mode 0700 (a rerun), or when it is
// empty (it is then taken over); anything else is refused, as is a symbolic
// link. It needs effective uid 0 — in Sudo mode, call it in the agent
// process that sudo started as root, before Drop.
func PrepareDir(dir string, u *User) error {
	if u == nil || u.UID <= 0 || u.GID <= 0 {
		return fmt.Errorf("prepare %s: agent user %v must be a non-root account", dir, u)
	}
	if !filepath.IsAbs(dir) {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("state dir %q is relative: give an absolute path", dir))
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("prepare %s: %w", dir, err)
	}
	created := true
	if err := os.Mkdir(dir, 0o700); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("prepare %s: %w", dir, err)
		}
		created = false
	}
	// O_NOFOLLOW|O_DIRECTORY: the checks and fchown/fchmod below apply to
	// this very directory, never to what a symlink swapped in points to.
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
			return errkind.Mark(errkind.BadInput, fmt.Errorf("state dir %s is a symbolic link or not a directory: remove it or choose another path", dir))
		}
		return fmt.Errorf("prepare %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fmt.Errorf("prepare %s: %w", dir, err)
	}
	if !created && !(int(st.Uid) == u.UID && st.Mode&0o777 == 0o700) {
		names, err := f.Readdirnames(1)
		if err != nil && len(names) == 0 && !errors.Is(err, io.EOF) {
			return fmt.Errorf("prepare %s: %w", dir, err)
		}
		if len(names) > 0 {
			return errkind.Mark(errkind.BadInput, fmt.Errorf("state dir %s exists, belongs to uid %d with mode %#o and is not empty: remove it or choose another path", dir, st.Uid, st.Mode&0o7777))
		}
	}
	if err := syscall.Fchown(fd, u.UID, u.GID); err != nil {
		return fmt.Errorf("prepare %s: chown to %s: %w", dir, u, err)
	}
	if err := syscall.Fchmod(fd, 0o700); err != nil {
		return fmt.Errorf("prepare %s: %w", dir, err)
	}
	if err := syscall.Fstat(fd, &st); err != nil {
		return fmt.Errorf("prepare %s: %w", dir, err)
	}
	if int(st.Uid) != u.UID || int(st.Gid) != u.GID || st.Mode&0o7777 != 0o700 {
		return fmt.Errorf("prepare %s: it is uid %d gid %d mode %#o after chown, want %d %d 0700", dir, st.Uid, st.Gid, st.Mode&0o7777, u.UID, u.GID)
	}
	return nil
}

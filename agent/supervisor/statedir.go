package supervisor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// PrivateDirName is the agent user's private directory (its key copy)
// inside the state dir.
const PrivateDirName = "private"

// StateDir is an opened state directory: the directory itself reached
// without following a symbolic link, checked to belong to the invoking
// user (or root) and not to be writable by others, and every file in it
// opened relative to it with O_NOFOLLOW. Root running 'run' or 'stop' in a
// state dir another user prepared would otherwise follow the links that
// user planted (append its log to /etc/shadow, chmod a link's target).
type StateDir struct {
	path string
	f    *os.File
}

// OpenStateDir creates path (mode 0700, parents 0755) when missing and
// opens it. Refusals are errkind.BadInput naming the path and the fix.
func OpenStateDir(path string) (*StateDir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("state dir %q: %w", path, err))
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, errkind.Mark(errkind.Local, fmt.Errorf("state dir %s: create its parent: %w (choose a writable --state-dir)", abs, err))
	}
	if err := os.Mkdir(abs, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, errkind.Mark(errkind.Local, fmt.Errorf("state dir %s: %w (choose a writable --state-dir)", abs, err))
	}
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("state dir %s is a symbolic link or not a directory: give --state-dir a real directory of your own (remove the link)", abs))
		}
		return nil, errkind.Mark(errkind.Local, fmt.Errorf("state dir %s: %w", abs, err))
	}
	d := &StateDir{path: abs, f: os.NewFile(uintptr(fd), abs)}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("state dir %s: %w", abs, err)
	}
	if me := os.Geteuid(); int(st.Uid) != me && st.Uid != 0 {
		d.Close()
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("state dir %s belongs to uid %d, not to you (uid %d) or root: another user may have planted it; remove it or give --state-dir a directory of your own", abs, st.Uid, me))
	}
	if st.Mode&0o022 != 0 {
		d.Close()
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("state dir %s is writable by group or others (mode %#o): run 'chmod go-w %s' or give --state-dir a private directory", abs, st.Mode&0o7777, abs))
	}
	return d, nil
}

// Close closes the directory.
func (d *StateDir) Close() error { return d.f.Close() }

// Path returns the state dir's absolute path.
func (d *StateDir) Path() string { return d.path }

// File returns the path of name in the state dir, for messages.
func (d *StateDir) File(name string) string { return filepath.Join(d.path, name) }

// open opens name in the directory without following a symbolic link, and
// only a regular file with one link (a hard link to another file is as
// dangerous as a symbolic one).
func (d *StateDir) open(name string, flag int, perm uint32) (*os.File, error) {
	fd, err := unix.Openat(int(d.f.Fd()), name, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, perm)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("%s is a symbolic link: remove it (nothing in the state dir may be a link)", d.File(name)))
		}
		return nil, &fs.PathError{Op: "open", Path: d.File(name), Err: err}
	}
	f := os.NewFile(uintptr(fd), d.File(name))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		f.Close()
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("%s is not a plain file (or has other hard links): remove it", d.File(name)))
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readFile reads name (at most 1 MiB) without following a link.
func (d *StateDir) readFile(name string) ([]byte, error) {
	f, err := d.open(name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// Chmod sets the directory's own mode (never a link's target).
func (d *StateDir) Chmod(mode os.FileMode) error { return d.f.Chmod(mode) }

// CheckPrivate refuses a private directory that is a symbolic link or not
// a directory.
func (d *StateDir) CheckPrivate() error {
	var st unix.Stat_t
	err := unix.Fstatat(int(d.f.Fd()), PrivateDirName, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", d.File(PrivateDirName), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("%s is a symbolic link or not a directory: remove it (the agent keeps its key copy there)", d.File(PrivateDirName)))
	}
	return nil
}

// removePrivate removes the agent's private directory and the key copies
// in it. It never follows a link: a planted link is an error
// (errkind.BadInput), not removed through.
func (d *StateDir) removePrivate() error {
	if err := d.CheckPrivate(); err != nil {
		return err
	}
	return removeTree(int(d.f.Fd()), PrivateDirName, d.File(PrivateDirName))
}

// removeTree removes name in dirfd recursively, relative to directory
// descriptors opened with O_NOFOLLOW, so that a link swapped in cannot
// redirect it.
func removeTree(dirfd int, name, path string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	// An empty directory goes without being opened (the agent user's
	// private directory, emptied by the agent, is not readable by the
	// job's user, but removable from the job's state dir).
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	names, rerr := f.Readdirnames(-1)
	var errs []error
	if rerr != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", path, rerr))
	}
	for _, n := range names {
		errs = append(errs, removeTree(fd, n, filepath.Join(path, n)))
	}
	f.Close()
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("remove %s: %w", path, err))
	}
	return errors.Join(errs...)
}

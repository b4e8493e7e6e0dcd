package supervisor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// PrivateDirName is the agent user's private directory (its key copy)
// inside the state dir.
const PrivateDirName = "private"

// StateDir is an opened state directory: opened once (an *os.Root), the
// directory itself reached without following a symbolic link, checked to
// belong to the invoking user (or root) and not to be writable by others,
// and every file in it read, written, created and removed through that
// handle — never by path again — refusing a symbolic link or a file with
// other hard links. Root running 'run' or 'stop' in a state dir another
// user prepared would otherwise follow the links that user planted (append
// its log to /etc/shadow, chmod a link's target). A command opens it once
// and passes it along; Close releases it.
type StateDir struct {
	path string
	root *os.Root
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
	notDir := errkind.Mark(errkind.BadInput, fmt.Errorf("state dir %s is a symbolic link or not a directory: give --state-dir a real directory of your own (remove the link)", abs))
	lfi, err := os.Lstat(abs)
	if err != nil {
		return nil, errkind.Mark(errkind.Local, fmt.Errorf("state dir %s: %w", abs, err))
	}
	if !lfi.IsDir() {
		return nil, notDir
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, errkind.Mark(errkind.Local, fmt.Errorf("state dir %s: %w", abs, err))
	}
	d := &StateDir{path: abs, root: root}
	fi, err := root.Stat(".")
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("state dir %s: %w", abs, err)
	}
	if !os.SameFile(lfi, fi) {
		// Swapped for a link between the check and the open.
		d.Close()
		return nil, notDir
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		d.Close()
		return nil, fmt.Errorf("state dir %s: no owner information", abs)
	}
	if me := os.Geteuid(); int(st.Uid) != me && st.Uid != 0 {
		d.Close()
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("state dir %s belongs to uid %d, not to you (uid %d) or root: another user may have planted it; remove it or give --state-dir a directory of your own", abs, st.Uid, me))
	}
	if fi.Mode().Perm()&0o022 != 0 {
		d.Close()
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("state dir %s is writable by group or others (mode %#o): run 'chmod go-w %s' or give --state-dir a private directory", abs, fi.Mode().Perm(), abs))
	}
	return d, nil
}

// Close closes the directory.
func (d *StateDir) Close() error { return d.root.Close() }

// Path returns the state dir's absolute path.
func (d *StateDir) Path() string { return d.path }

// File returns the path of name in the state dir, for messages and for
// other processes (the agent's private directory, the reports' paths).
func (d *StateDir) File(name string) string { return filepath.Join(d.path, name) }

// refuseLink refuses name when it is a symbolic link or not a plain file.
// A missing name is fine.
func (d *StateDir) refuseLink(name string) error {
	fi, err := d.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return errkind.Mark(errkind.BadInput, fmt.Errorf("%s is a symbolic link: remove it (nothing in the state dir may be a link)", d.File(name)))
	case !fi.Mode().IsRegular():
		return d.notPlain(name)
	}
	return nil
}

func (d *StateDir) notPlain(name string) error {
	return errkind.Mark(errkind.BadInput, fmt.Errorf("%s is not a plain file (or has other hard links): remove it", d.File(name)))
}

// open opens name in the directory, refusing a symbolic link and anything
// but a regular file with one link (a hard link to another file is as
// dangerous as a symbolic one). O_NONBLOCK: a planted FIFO does not block
// the open.
func (d *StateDir) open(name string, flag int, perm os.FileMode) (*os.File, error) {
	if err := d.refuseLink(name); err != nil {
		return nil, err
	}
	f, err := d.root.OpenFile(name, flag|syscall.O_NONBLOCK, perm)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.File(name), Err: cause(err)}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.Mode().IsRegular() || !ok || st.Nlink != 1 {
		f.Close()
		return nil, d.notPlain(name)
	}
	return f, nil
}

// readFile reads name (at most 1 MiB) without following a link.
func (d *StateDir) readFile(name string) ([]byte, error) {
	f, err := d.open(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// WriteFile writes name in the state dir atomically with mode perm
// (atomicfile.WriteIn: a temporary file and a rename inside the directory,
// so a link planted as name is replaced, never followed).
func (d *StateDir) WriteFile(name string, data []byte, perm os.FileMode) error {
	if err := atomicfile.WriteIn(d.root, name, data, perm, -1, -1); err != nil {
		return fmt.Errorf("write %s: %w", d.File(name), err)
	}
	return nil
}

// Chmod sets the directory's own mode (never a link's target).
func (d *StateDir) Chmod(mode os.FileMode) error { return d.root.Chmod(".", mode) }

// CheckPrivate refuses a private directory that is a symbolic link or not
// a directory.
func (d *StateDir) CheckPrivate() error {
	fi, err := d.root.Lstat(PrivateDirName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", d.File(PrivateDirName), err)
	}
	if !fi.IsDir() {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("%s is a symbolic link or not a directory: remove it (the agent keeps its key copy there)", d.File(PrivateDirName)))
	}
	return nil
}

// removePrivate removes the agent's private directory and the key copies
// in it. It never follows a link: a planted link is an error
// (errkind.BadInput), not removed through. An empty private directory of
// the agent user, which the job's user cannot read, is removed all the
// same (os.Root.RemoveAll removes a directory it cannot list once it is
// empty).
func (d *StateDir) removePrivate() error {
	if err := d.CheckPrivate(); err != nil {
		return err
	}
	if err := d.root.RemoveAll(PrivateDirName); err != nil {
		return fmt.Errorf("remove %s: %w", d.File(PrivateDirName), cause(err))
	}
	return nil
}

// remove removes the file name from the state dir; a missing one is fine.
func (d *StateDir) remove(name string) error {
	if err := d.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", d.File(name), cause(err))
	}
	return nil
}

// cause is the error of a failed file operation without the operation and
// the name relative to the root, which messages replace with the full path.
func cause(err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		return pe.Err
	case errors.As(err, &le):
		return le.Err
	}
	return err
}

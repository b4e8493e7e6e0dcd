// Package atomicfile owns writing a file so that a reader, a concurrent
// writer or a kill at any moment never sees half of it: a temporary file in
// the same directory, with its exact mode (and owner), synced, then renamed
// over the target. It is the one such writer; callers that hold a
// directory open (an *os.Root: the state dir, the agent user's private
// directory) write through it with WriteIn, so nothing is reached by path
// again and no symbolic link leads the write out of the directory.
package atomicfile

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// WriteFile writes data to path atomically with mode perm (exactly, not
// narrowed by the umask). The directory must exist.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFileOwned(path, data, perm, -1, -1)
}

// WriteFileOwned is WriteFile, with the new file owned by uid and gid when
// uid is not negative (which needs root).
func WriteFileOwned(path string, data []byte, perm os.FileMode, uid, gid int) error {
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer root.Close()
	if err := WriteIn(root, filepath.Base(path), data, perm, uid, gid); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteIn writes data as name in root atomically, with mode perm (exact)
// and, when uid is not negative, owned by uid and gid. The temporary file
// is ".<name>.tmp-<random>" next to it; it is removed on failure.
func WriteIn(root *os.Root, name string, data []byte, perm os.FileMode, uid, gid int) (err error) {
	var f *os.File
	var tmp string
	for range 100 {
		tmp = fmt.Sprintf(".%s.tmp-%d", filepath.Base(name), rand.Uint64())
		tmp = filepath.Join(filepath.Dir(name), tmp)
		if f, err = root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); !os.IsExist(err) {
			break
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			root.Remove(tmp)
		}
	}()
	if uid >= 0 {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		// Created 0600: the umask may have narrowed it, never widened it;
		// the mode is set exactly before any data is written.
		err = f.Chmod(perm)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	return err
}

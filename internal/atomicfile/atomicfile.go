// Package atomicfile owns writing a file so that a reader, a concurrent
// writer or a kill at any moment never sees half of it: a temporary file in
// the same directory, synced, then renamed over the target.
package atomicfile

import (
	"fmt"
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
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	err = f.Chmod(perm)
	if err == nil && uid >= 0 {
		err = f.Chown(uid, gid)
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
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

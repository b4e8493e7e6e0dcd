package errkind

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// IsLocalIO reports whether err is a fault of this machine's file system or
// process limits rather than of the network: no space or quota left, a
// read-only file system, permission denied on a path, too many open files.
//
// Ask it before any net.Error test: a syscall.Errno such as ENOSPC has
// Timeout and Temporary methods, so it satisfies net.Error and would
// otherwise be classed as a network fault.
func IsLocalIO(err error) bool {
	if err == nil {
		return false
	}
	var pathErr *fs.PathError
	var linkErr *os.LinkError
	onPath := errors.As(err, &pathErr) || errors.As(err, &linkErr)
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EMFILE, syscall.ENFILE, syscall.EFBIG:
			return true
		case syscall.EACCES, syscall.EPERM, syscall.ENOTDIR, syscall.EISDIR, syscall.ELOOP, syscall.EXDEV:
			// On a path these are local; on a socket (a firewall's EPERM on
			// connect) they arrive as *net.OpError, never as a path error.
			return onPath
		}
	}
	return onPath && (errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist))
}

//go:build unix

package ci

import (
	"io/fs"
	"os"
	"syscall"
)

// ownedByUsOrRoot reports whether fi's file belongs to this process's user
// or to root.
func ownedByUsOrRoot(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && (int(st.Uid) == os.Getuid() || st.Uid == 0)
}

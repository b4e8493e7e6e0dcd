//go:build !unix

package privilege

import (
	"errors"
	"io/fs"
	"runtime"
)

// lockPwd: there are no Unix account files to lock on this system.
func lockPwd(path string) (unlock func(), err error) {
	return nil, errors.New("account files (" + path + ") exist only on Unix, not on " + runtime.GOOS)
}

// fileOwner: no Unix owners here.
func fileOwner(fs.FileInfo) (uid, gid int) { return -1, -1 }

// PrepareDir needs Unix ownership and modes; the agent user exists only there.
func PrepareDir(dir string, u *User) error {
	return errors.New("prepare " + dir + ": a private agent directory needs a Unix system, not " + runtime.GOOS)
}

//go:build !unix

package ci

import "io/fs"

// ownedByUsOrRoot: no Unix owners here, so no runner file variable is
// trusted with a relaxed mode.
func ownedByUsOrRoot(fs.FileInfo) bool { return false }

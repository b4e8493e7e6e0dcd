//go:build !unix

package tlsauth

// openNoFollow: no such flags here; CopyKey's regular-file check remains.
const openNoFollow = 0

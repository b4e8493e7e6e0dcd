//go:build unix

package tlsauth

import "syscall"

// openNoFollow opens without following a final symbolic link and without
// blocking on a FIFO.
const openNoFollow = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

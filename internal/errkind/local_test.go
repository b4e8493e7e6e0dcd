package errkind

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestIsLocalIO(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"enospc write", fmt.Errorf("write zip: %w", &fs.PathError{Op: "write", Path: "/c/x.zip", Err: syscall.ENOSPC}), true},
		{"bare enospc", syscall.ENOSPC, true},
		{"erofs mkdir", &fs.PathError{Op: "mkdir", Path: "/c", Err: syscall.EROFS}, true},
		{"eacces mkdir", &fs.PathError{Op: "mkdir", Path: "/c", Err: syscall.EACCES}, true},
		{"rename", &os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EACCES}, true},
		{"eacces socket", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EACCES)}, false},
		{"conn refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
		{"plain", errors.New("boom"), false},
	} {
		if got := IsLocalIO(tc.err); got != tc.want {
			t.Errorf("%s: IsLocalIO(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	for k, want := range map[Kind]int{Other: 1, BadInput: 2, Unreachable: 3, Integrity: 4, Local: 1, Answered: 1, Canceled: 1} {
		if got := k.ExitCode(); got != want {
			t.Errorf("%v.ExitCode() = %d, want %d", k, got, want)
		}
	}
}

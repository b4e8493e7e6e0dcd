package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

func TestWarmFailureKind(t *testing.T) {
	t.Parallel()
	enospc := &fs.PathError{Op: "write", Path: "/cache/cache/download/m/@v/v1.zip.tmp", Err: syscall.ENOSPC}
	eacces := &fs.PathError{Op: "mkdir", Path: "/cache/cache/lock", Err: syscall.EACCES}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	mod := func(k errkind.Kind, err error) error { return errkind.Mark(k, fmt.Errorf("m@v1.0.0: %w", err)) }
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, test := range []struct {
		name string
		ctx  context.Context
		err  error
		want errkind.Kind
	}{
		// The warm used to mark a full disk unreachable: ENOSPC passes
		// for a net.Error.
		{"full disk marked unreachable", nil, errors.Join(mod(errkind.Unreachable, enospc), mod(errkind.Unreachable, enospc)), errkind.Local},
		{"read-only cache", nil, mod(errkind.Other, eacces), errkind.Local},
		{"local among unreachable", nil, errors.Join(mod(errkind.Unreachable, refused), mod(errkind.Local, errors.New("lock"))), errkind.Local},
		{"integrity first", nil, errors.Join(mod(errkind.Unreachable, refused), mod(errkind.Integrity, errors.New("mismatch"))), errkind.Integrity},
		{"unreachable", nil, errors.Join(mod(errkind.Answered, errors.New("403")), mod(errkind.Unreachable, refused)), errkind.Unreachable},
		{"answered only", nil, errors.Join(mod(errkind.Answered, errors.New("403")), mod(errkind.Answered, errors.New("400"))), errkind.Answered},
		{"missing go.sum", nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read go.sum: %w", &fs.PathError{Op: "open", Path: "go.sum", Err: syscall.ENOENT})), errkind.BadInput},
		{"cancelled", canceled, mod(errkind.Unreachable, context.Canceled), errkind.Canceled},
	} {
		ctx := test.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		if got := warmFailureKind(ctx, test.err); got != test.want {
			t.Errorf("%s: warmFailureKind = %v, want %v", test.name, got, test.want)
		}
	}
	for err, want := range map[error]string{
		enospc: "free space on the file system holding the module cache /cache",
		eacces: "may not write /cache/cache/lock",
		&fs.PathError{Op: "mkdir", Path: "/ro/cache", Err: syscall.EROFS}:  "read-only",
		&fs.PathError{Op: "mkdir", Path: "/f/cache", Err: syscall.ENOTDIR}: "a file stands where /f/cache",
	} {
		if got := localFaultLine(fmt.Errorf("warm: %w", err), "/cache"); !strings.Contains(got, want) || !strings.Contains(got, "no network diagnosis") {
			t.Errorf("localFaultLine(%v) = %q, want it to say %q and that no diagnosis ran", err, got, want)
		}
	}
}

func TestCheckGoEnv(t *testing.T) {
	for _, test := range []struct {
		modcache, gopath string
		want             string
	}{
		{"/abs/cache", "/abs/go", ""},
		{"", "", ""},
		{"rel/cache", "", `GOMODCACHE="rel/cache" is a relative path`},
		{"", "/abs:rel", `GOPATH entry "rel"`},
	} {
		t.Setenv("GOMODCACHE", test.modcache)
		t.Setenv("GOPATH", test.gopath)
		err := checkGoEnv()
		if test.want == "" {
			if err != nil {
				t.Errorf("GOMODCACHE=%q GOPATH=%q: %v, want no error", test.modcache, test.gopath, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), test.want) || errkind.Of(err) != errkind.BadInput {
			t.Errorf("GOMODCACHE=%q GOPATH=%q: %v (kind %v), want bad input saying %q", test.modcache, test.gopath, err, errkind.Of(err), test.want)
		}
	}
}

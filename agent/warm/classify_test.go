package warm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// TestClassifyNoDuckTyping: a disk fault that IsLocalIO does not know (EIO,
// EBUSY) is not a network fault because syscall.Errno has Timeout and
// Temporary methods; kinds come from where the failure happened.
func TestClassifyNoDuckTyping(t *testing.T) {
	t.Parallel()
	eio := &fs.PathError{Op: "write", Path: "/cache/cache/download/m/@v/v1.0.0.zip.tmp", Err: syscall.EIO}
	ebusy := &fs.PathError{Op: "rename", Path: "/cache/cache/download/m/@v/v1.0.0.zip", Err: syscall.EBUSY}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name string
		err  error
		want errkind.Kind
	}{
		{"EIO writing the cache, unmarked", eio, errkind.Other},
		{"EBUSY renaming in the cache, unmarked", ebusy, errkind.Other},
		{"EIO marked where the cache is written", local(eio), errkind.Local},
		{"a local mark wrapped", fmt.Errorf("zip: %w", local(ebusy)), errkind.Local},
		{"connection refused from the source", fromSource(refused), errkind.Unreachable},
		{"a source's plain error", fromSource(errors.New("stream reset")), errkind.Unreachable},
		{"a source's 404 stays an answer", fromSource(&upstream.Error{StatusCode: 404}), errkind.Answered},
		{"a source's cancellation", fromSource(context.Canceled), errkind.Canceled},
		{"a cut body is integrity", fromSource(io.ErrUnexpectedEOF), errkind.Integrity},
		{"HTTPSource transport failure", &upstream.Error{Err: refused}, errkind.Unreachable},
		{"503", &upstream.Error{StatusCode: 503}, errkind.Unreachable},
		{"403", &upstream.Error{StatusCode: 403}, errkind.Answered},
		{"a front refusing the client certificate", &upstream.Error{StatusCode: 496}, errkind.Unreachable},
		{"timeout", fmt.Errorf("fetch: %w", context.DeadlineExceeded), errkind.Unreachable},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("%s: classify(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
	if isTemporary(local(eio)) || isTemporary(eio) {
		t.Error("a disk fault is retried as if the network had failed")
	}
	if !isTemporary(fromSource(refused)) {
		t.Error("a refused connection is not retried")
	}
}

// bytesSource serves the same bytes for every path.
type bytesSource []byte

func (b bytesSource) Open(context.Context, string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(b))), nil
}

// TestFetchFileCacheFaultIsLocal: the module cache's file failing (here a
// file the kernel will not truncate: EINVAL, an Errno that passes for a
// net.Error) makes the fetch a local fault, not an unreachable upstream
// that would run the network diagnosis.
func TestFetchFileCacheFaultIsLocal(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v1.0.0.zip.tmp")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path) // read-only: truncate and write fail
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &warmer{src: bytesSource("zip"), attempts: 1, log: hclog.NewNullLogger(), prog: newProgress(nil, time.Hour)}
	_, err = w.fetchFile(t.Context(), "m/@v/v1.0.0.zip", f)
	if err == nil {
		t.Fatal("fetchFile into a read-only file succeeded")
	}
	if got := classify(err); got != errkind.Local {
		t.Errorf("fetchFile into a read-only file: %v: kind %v, want %v", err, got, errkind.Local)
	}
}

// TestOneKindOneFix: a warm's error carries one kind, the most telling of
// its modules' (Setup and the warm command use it as it is), and a local
// fault says its fix once, for what failed where.
func TestOneKindOneFix(t *testing.T) {
	t.Parallel()
	refused := fromSource(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	mod := func(k errkind.Kind, msg string) error { return errkind.Mark(k, errors.New(msg)) }
	for _, tc := range []struct {
		name string
		errs []error
		want errkind.Kind
	}{
		{"integrity before unreachable", []error{refused, mod(errkind.Integrity, "mismatch")}, errkind.Integrity},
		{"unreachable before answered", []error{mod(errkind.Answered, "403"), refused}, errkind.Unreachable},
		{"answered only", []error{mod(errkind.Answered, "403"), mod(errkind.Answered, "400")}, errkind.Answered},
		{"bad input first", []error{refused, mod(errkind.BadInput, "malformed module path")}, errkind.BadInput},
	} {
		w := &warmer{recs: map[module.Version]*record{}}
		for i, err := range tc.errs {
			w.recs[module.Version{Path: fmt.Sprintf("example.com/m%d", i), Version: "v1.0.0"}] = &record{err: err}
		}
		_, err := w.summary(t.Context(), time.Now(), "up")
		if got := errkind.Of(err); got != tc.want {
			t.Errorf("%s: kind %v, want %v (%v)", tc.name, got, tc.want, err)
		}
		if n := strings.Count(fmt.Sprint(err), "not a network fault"); (tc.want == errkind.Answered) != (n == 1) || n > 1 {
			t.Errorf("%s: says %d times that it is not a network fault:\n%v", tc.name, n, err)
		}
	}
	for err, want := range map[error]string{
		&fs.PathError{Op: "write", Path: "/cache/cache/download/m/@v/v1.zip.tmp", Err: syscall.ENOSPC}: "the disk is full: free space on the file system holding the module cache /cache",
		&fs.PathError{Op: "mkdir", Path: "/cache/cache/lock", Err: syscall.EACCES}:                     "may not write /cache/cache/lock",
		&fs.PathError{Op: "mkdir", Path: "/ro/cache", Err: syscall.EROFS}:                              "/ro/cache is on a read-only file system",
		&fs.PathError{Op: "mkdir", Path: "/f/cache", Err: syscall.ENOTDIR}:                             "a file stands where /f/cache",
	} {
		got := localFault("/cache", local(err)).Error()
		if !strings.Contains(got, want) || strings.Count(got, "no network diagnosis") != 1 || strings.Count(got, "fix: ") != 1 {
			t.Errorf("localFault(%v) = %q, want it to say %q, and once the fix and that no diagnosis ran", err, got, want)
		}
	}
}

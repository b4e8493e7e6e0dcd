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
		{"a source's 404 stays an answer", fromSource(&HTTPError{StatusCode: 404}), errkind.Answered},
		{"a source's cancellation", fromSource(context.Canceled), errkind.Canceled},
		{"a cut body is integrity", fromSource(io.ErrUnexpectedEOF), errkind.Integrity},
		{"HTTPSource transport failure", &HTTPError{Err: refused}, errkind.Unreachable},
		{"503", &HTTPError{StatusCode: 503}, errkind.Unreachable},
		{"403", &HTTPError{StatusCode: 403}, errkind.Answered},
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

package warm

import (
	"context"
	"errors"
	"io"
	"net/http"
	"syscall"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

var (
	errNoSpace    = syscall.ENOSPC
	errReadOnlyFS = syscall.EROFS
)

// classify returns the failure model's kind of a module's failure
// (DESIGN.md, Contract). A local I/O fault is asked first: a
// syscall.Errno such as ENOSPC satisfies net.Error.
func classify(err error) errkind.Kind {
	if k := errkind.Of(err); k != errkind.Other {
		return k
	}
	var me *MismatchError
	switch {
	case errors.Is(err, context.Canceled):
		return errkind.Canceled
	case errors.As(err, &me), errors.Is(err, errZip), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errTooLarge):
		return errkind.Integrity
	case errkind.IsLocalIO(err):
		return errkind.Local
	}
	if s := statusOf(err); s >= 400 && s < 500 && s != http.StatusTooManyRequests {
		return errkind.Answered
	}
	switch {
	case isNotFound(err):
		return errkind.Answered
	case isTemporary(err), isNetwork(err):
		return errkind.Unreachable
	}
	return errkind.Other
}

// statusOf returns the HTTP status of a failed fetch, 0 when none.
func statusOf(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	var ue *upstream.Error
	if errors.As(err, &ue) {
		return ue.StatusCode
	}
	return 0
}

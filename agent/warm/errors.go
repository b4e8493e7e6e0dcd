package warm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
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

// maxRelay bounds the upstream's text relayed in a message.
const maxRelay = 300

// describeErr is the message of a module's failure; for an upstream that
// answered with an error status, the start of its text is relayed.
func describeErr(err error) string {
	msg := err.Error()
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.StatusCode != 0 && ue.Body != "" {
		body := strings.Join(strings.Fields(ue.Body), " ")
		if len(body) > maxRelay {
			body = body[:maxRelay] + "…"
		}
		if !strings.Contains(msg, body) {
			msg += fmt.Sprintf(" (the upstream said: %s)", body)
		}
	}
	return msg
}

package warm

import (
	"context"
	"errors"
	"io"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// classify returns the failure model's kind of a module's failure. Kinds
// are marked where the failure happens: errkind.Local where the module
// cache is written (local, localWriter), errkind.Unreachable where the
// Source fails without saying more (fromSource), the upstream client's
// own marks; classify reads those marks and recognises warm's own checks
// and the answers that carry an HTTP status. It never guesses from an
// error's methods: a syscall.Errno such as EIO has Timeout and Temporary
// methods, and a disk fault would pass for the network's.
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
	var ue *upstream.Error
	fromUpstream := errors.As(err, &ue)
	switch {
	case isNotFound(err), fromUpstream && ue.Answered():
		return errkind.Answered
	case fromUpstream, errors.Is(err, context.DeadlineExceeded):
		// A transport failure, a 429 or 5xx, a refused client
		// certificate, a fetch that ran out of time.
		return errkind.Unreachable
	}
	return errkind.Other
}

// isTemporary reports whether a retry of the failed fetch may succeed: a
// transport failure, a 429 or 5xx, or a body cut short.
func isTemporary(err error) bool {
	return classify(err) == errkind.Unreachable || errors.Is(err, io.ErrUnexpectedEOF)
}

// fromSource marks a failure of the Source — opening a file or reading its
// body — that says nothing more precise as a transport failure: the Source
// is the network's side of the warm.
func fromSource(err error) error {
	if err == nil || err == io.EOF || classify(err) != errkind.Other {
		return err
	}
	return errkind.Mark(errkind.Unreachable, err)
}

// sourceReader is a Source's body: its read errors go through fromSource.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(b []byte) (int, error) {
	n, err := s.r.Read(b)
	return n, fromSource(err)
}

// local marks a failure to write the module cache (or to take its lock) as
// a fault of this machine, whatever the error: EIO, EBUSY or a full disk
// are not the network's.
func local(err error) error {
	if err == nil || errkind.Of(err) != errkind.Other {
		return err
	}
	return errkind.Mark(errkind.Local, err)
}

// localWriter is a file of the module cache: its write errors are local.
type localWriter struct{ w io.Writer }

func (l localWriter) Write(b []byte) (int, error) {
	n, err := l.w.Write(b)
	return n, local(err)
}

// Package errkind owns the classification of errors into the few kinds that
// callers branch on, the failure model of docs/architecture.md: bad input, a local fault
// (cache dir, disk, permissions), an upstream that answered with an error, a
// transport failure (unreachable), an integrity failure, and cancellation.
// Libraries mark the errors they return; only the command maps a kind to a
// process exit code (docs/architecture.md, the failure model).
package errkind

import "errors"

// Kind is the class of an error.
type Kind int

const (
	// Other is any error that is not one of the kinds below.
	Other Kind = iota
	// BadInput is bad input or usage: a flag, file, policy or go.sum that the
	// user must fix. Its message names the input and the fix.
	BadInput
	// Unreachable is an upstream that could not be reached, timed out or
	// refused the request.
	Unreachable
	// Integrity is a hash mismatch, a tampered or a truncated module.
	Integrity
	// Local is a fault on this machine: the module cache directory, a full
	// disk, permissions, the environment. Its message names the path and the
	// fix; it never starts a network diagnosis.
	Local
	// Answered is an upstream that answered with an error status (403, 400,
	// 404…): its status and text are relayed, it is not a network fault and
	// it starts no network diagnosis.
	Answered
	// Canceled is a run cancelled by a signal or its caller: not an upstream
	// failure.
	Canceled
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case BadInput:
		return "bad input"
	case Unreachable:
		return "unreachable"
	case Integrity:
		return "integrity"
	case Local:
		return "local fault"
	case Answered:
		return "upstream answered"
	case Canceled:
		return "canceled"
	}
	return "other"
}

// ExitCode returns the process exit code for the kind (docs/architecture.md).
func (k Kind) ExitCode() int {
	switch k {
	case BadInput:
		return 2
	case Unreachable:
		return 3
	case Integrity:
		return 4
	}
	return 1
}

type marked struct {
	kind Kind
	err  error
}

func (m *marked) Error() string { return m.err.Error() }
func (m *marked) Unwrap() error { return m.err }

// Mark returns err marked with kind; Mark of a nil error is nil. The message
// is unchanged.
func Mark(kind Kind, err error) error {
	if err == nil {
		return nil
	}
	return &marked{kind: kind, err: err}
}

// Of returns the kind of err: the outermost mark in its chain, or the first
// mark found in a joined error, or Other.
func Of(err error) Kind {
	var m *marked
	if errors.As(err, &m) {
		return m.kind
	}
	return Other
}

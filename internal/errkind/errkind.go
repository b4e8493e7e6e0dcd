// Package errkind owns the classification of errors into the few kinds that
// callers branch on: bad input, upstream unreachable, integrity failure.
// Libraries mark the errors they return; only the command maps a kind to a
// process exit code (see DESIGN.md, Contract: exit codes).
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
	}
	return "other"
}

// ExitCode returns the process exit code for the kind (DESIGN.md, Contract).
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

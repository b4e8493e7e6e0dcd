//go:build !linux

package privilege

import (
	"errors"
	"os/exec"
)

var errUnsupported = errors.New("privilege separation is implemented for Linux only")

// Drop is implemented for Linux only; elsewhere it fails closed.
func Drop(u *User) error { return errUnsupported }

// StartNoNewPrivs is implemented for Linux only; elsewhere it fails.
func StartNoNewPrivs(cmd *exec.Cmd) error { return errUnsupported }

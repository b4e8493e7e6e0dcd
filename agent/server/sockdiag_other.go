//go:build !linux

package server

import (
	"errors"
	"net"
)

func sockDiagUID(src, dst *net.TCPAddr) (int, error) {
	return -1, errors.New("sock_diag: Linux only")
}

func sockDiagAvailable() bool { return false }

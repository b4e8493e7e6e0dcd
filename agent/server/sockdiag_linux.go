package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// sockDiagUID asks the kernel (NETLINK_SOCK_DIAG, what ss(8) uses) for the
// owner of the TCP socket whose local address is src and remote address is
// dst: an exact lookup in the socket hash, O(1), where reading
// /proc/net/tcp walks every bucket of the table.
func sockDiagUID(src, dst *net.TCPAddr) (int, error) {
	family := uint8(unix.AF_INET6)
	s4, d4 := src.IP.To4(), dst.IP.To4()
	if s4 != nil && d4 != nil {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sock_diag: %w", err)
	}
	defer unix.Close(fd)
	// Replies must arrive promptly; never block a connection on them.
	tv := unix.Timeval{Sec: 1}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	const hdrLen, reqLen = unix.SizeofNlMsghdr, 56 // inet_diag_req_v2
	msg := make([]byte, hdrLen+reqLen)
	ne := binary.NativeEndian
	seq := sockDiagSeq.Add(1)
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(msg[8:], seq)
	r := msg[hdrLen:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // all states
	id := r[8:]                     // inet_diag_sockid
	binary.BigEndian.PutUint16(id[0:], uint16(src.Port))
	binary.BigEndian.PutUint16(id[2:], uint16(dst.Port))
	if family == unix.AF_INET {
		copy(id[4:], s4)
		copy(id[20:], d4)
	} else {
		copy(id[4:], src.IP.To16())
		copy(id[20:], dst.IP.To16())
	}
	ne.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return -1, fmt.Errorf("sock_diag: %w", err)
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return -1, fmt.Errorf("sock_diag: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return -1, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := unix.Errno(-int32(ne.Uint32(m.Data))); errno != 0 {
						if errno == unix.ENOENT {
							return -1, errPeerNotFound
						}
						return -1, fmt.Errorf("sock_diag: %w", errno)
					}
				}
				return -1, errPeerNotFound
			case unix.SOCK_DIAG_BY_FAMILY:
				// inet_diag_msg: family, state, timer, retrans, sockid
				// (48 bytes), expires, rqueue, wqueue, uid, inode.
				if len(m.Data) < 72 {
					return -1, errors.New("sock_diag: short reply")
				}
				// A TIME_WAIT socket reports uid 0 whoever owned it, and so
				// does one its owner closed as it waits for the FIN it
				// lacks (a timewait socket in FIN_WAIT2, state 5): inode 0
				// marks both. A peer that closed its socket reads no answer;
				// never take it for root.
				if m.Data[1] == 6 || ne.Uint32(m.Data[68:]) == 0 {
					return -1, errPeerNotFound
				}
				return int(ne.Uint32(m.Data[64:])), nil
			}
		}
	}
}

var sockDiagSeq atomic.Uint32

// sockDiagAvailable reports whether a NETLINK_SOCK_DIAG socket can be made.
func sockDiagAvailable() bool {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

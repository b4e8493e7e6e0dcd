package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// errPeerNotFound: the peer's socket is not in /proc/net/tcp{,6} (it closed
// already, or lives in another network namespace).
var errPeerNotFound = errors.New("peer socket not found")

// procNetTCP are the kernel's socket tables read by peerUID, as identd reads
// them. Variables for tests of the fallback.
var procNetTCP, procNetTCP6 = "/proc/net/tcp", "/proc/net/tcp6"

// useSockDiag asks the kernel over netlink first (a variable for tests of
// the fallbacks).
var useSockDiag = true

// peerLookupAvailable reports whether peerUID can work here (Linux, with
// sock_diag or /proc mounted); the reason when it cannot.
func peerLookupAvailable() error {
	if useSockDiag && sockDiagAvailable() {
		return nil
	}
	f, err := os.Open(procNetTCP)
	if err != nil {
		return err
	}
	return f.Close()
}

// procSnapshot shares one read of the socket tables among the connections
// accepted before it began: under a flood of connections each is
// identified from a recent read instead of re-reading tables that grow
// with the flood.
type procSnapshot struct {
	mu     sync.Mutex
	at     time.Time
	v4, v6 []byte
	err4   error
	err6   error
}

// tables returns socket tables read after accepted.
func (p *procSnapshot) tables(accepted time.Time) (v4, v6 []byte, err4, err6 error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.After(accepted) {
		p.at = time.Now()
		p.v4, p.err4 = os.ReadFile(procNetTCP)
		p.v6, p.err6 = os.ReadFile(procNetTCP6)
	}
	return p.v4, p.v6, p.err4, p.err6
}

// peerUID looks the peer up with sock_diag, or in tables read after
// accepted.
func (p *procSnapshot) peerUID(local, remote net.Addr, accepted time.Time) (int, error) {
	l, ok1 := local.(*net.TCPAddr)
	r, ok2 := remote.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return -1, fmt.Errorf("peer lookup: not a TCP connection (%T)", remote)
	}
	if useSockDiag {
		uid, err := sockDiagUID(r, l)
		if err == nil || errors.Is(err, errPeerNotFound) {
			return uid, err
		}
	}
	return p.scanAfter(l, r, accepted)
}

// scan looks the peer up in tables read now (for tests and benchmarks).
func (p *procSnapshot) scan(local, remote net.Addr) (int, error) {
	return p.scanAfter(local.(*net.TCPAddr), remote.(*net.TCPAddr), time.Now())
}

// scanAfter finds the client end of the connection local<-remote in
// /proc/net/tcp (IPv4) or /proc/net/tcp6 (IPv6, and IPv4-mapped peers),
// read after accepted, as identd does.
func (p *procSnapshot) scanAfter(l, r *net.TCPAddr, accepted time.Time) (int, error) {
	v4, v6, err4, err6 := p.tables(accepted)
	if l4, r4 := l.IP.To4(), r.IP.To4(); l4 != nil && r4 != nil {
		if err4 != nil {
			return -1, fmt.Errorf("peer lookup: %w", err4)
		}
		uid, err := scanProcNet(v4, sockKey4(r4, r.Port, l4, l.Port))
		if !errors.Is(err, errPeerNotFound) {
			return uid, err
		}
	}
	if err6 != nil {
		return -1, fmt.Errorf("peer lookup: %w", err6)
	}
	return scanProcNet(v6, sockKey6(r.IP.To16(), r.Port, l.IP.To16(), l.Port))
}

// sockKey4 is how /proc/net/tcp prints a socket's "local remote" address
// pair: each IPv4 address as its 32-bit word in host byte order, in hex.
func sockKey4(src net.IP, sport int, dst net.IP, dport int) []byte {
	return fmt.Appendf(nil, " %08X:%04X %08X:%04X ", binary.NativeEndian.Uint32(src), sport, binary.NativeEndian.Uint32(dst), dport)
}

// sockKey6 is the IPv6 form: four 32-bit words, each in host byte order.
func sockKey6(src net.IP, sport int, dst net.IP, dport int) []byte {
	w := func(ip net.IP) string {
		var b []byte
		for i := 0; i < 16; i += 4 {
			b = fmt.Appendf(b, "%08X", binary.NativeEndian.Uint32(ip[i:i+4]))
		}
		return string(b)
	}
	return fmt.Appendf(nil, " %s:%04X %s:%04X ", w(src), sport, w(dst), dport)
}

// scanProcNet finds the line of table holding key and returns its uid
// column.
func scanProcNet(b, key []byte) (int, error) {
	i := bytes.Index(b, key)
	if i < 0 {
		return -1, errPeerNotFound
	}
	line := b[i:]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	// After the addresses: st tx:rx tr:when retrnsmt uid timeout inode …
	f := bytes.Fields(line)
	if len(f) < 9 {
		return -1, errors.New("peer lookup: short line in the socket table")
	}
	// A socket in TIME_WAIT (06) is listed with uid 0 whoever owned it, and
	// so is one its owner closed before the server's FIN (a timewait socket
	// shown as FIN_WAIT2, 05): inode 0 marks both. Never take that for root.
	if string(f[2]) == "06" || string(f[8]) == "0" {
		return -1, errPeerNotFound
	}
	uid, err := strconv.Atoi(string(f[6]))
	if err != nil {
		return -1, fmt.Errorf("peer lookup: uid column: %w", err)
	}
	return uid, nil
}

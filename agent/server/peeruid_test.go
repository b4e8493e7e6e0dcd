package server

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestPeerUIDOwnSocket: both lookups find this process's own client
// socket, over IPv4 and IPv6 loopback.
func TestPeerUIDOwnSocket(t *testing.T) {
	t.Parallel()
	var snap procSnapshot
	lookups := map[string]func(l, r net.Addr) (int, error){
		"sock_diag": func(l, r net.Addr) (int, error) { return sockDiagUID(r.(*net.TCPAddr), l.(*net.TCPAddr)) },
		"/proc":     func(l, r net.Addr) (int, error) { return snap.scan(l, r) },
	}
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", network)
		if err != nil {
			t.Logf("%s: %v (no such loopback here)", network, err)
			continue
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for name, lookup := range lookups {
			uid, err := lookup(s.LocalAddr(), s.RemoteAddr())
			if err != nil || uid != os.Getuid() {
				t.Errorf("%s, %s: got uid %d, %v; want %d", network, name, uid, err, os.Getuid())
			}
			// A pair that is no connection is not found.
			bogus := *s.LocalAddr().(*net.TCPAddr)
			bogus.Port = 1
			if _, err := lookup(&bogus, s.RemoteAddr()); err == nil {
				t.Errorf("%s, %s: a pair that is no connection was found", network, name)
			}
		}
	}
}

// TestPeerUIDClosedPeer: a peer that wrote its request and closed its
// socket before the agent looked it up leaves a timewait socket that the
// kernel lists with uid 0 whoever owned it (state FIN_WAIT2, not
// TIME_WAIT, while the agent's end is open). Neither lookup may take it
// for root: an unprivileged user would pass the peer check as root (the
// host agent serves root) with a request it need not read the answer of,
// such as POST <token>/.goproxy-setup/stop.
func TestPeerUIDClosedPeer(t *testing.T) {
	t.Parallel()
	var snap procSnapshot
	lookups := map[string]func(l, r net.Addr) (int, error){
		"sock_diag": func(l, r net.Addr) (int, error) { return sockDiagUID(r.(*net.TCPAddr), l.(*net.TCPAddr)) },
		"/proc":     func(l, r net.Addr) (int, error) { return snap.scan(l, r) },
	}
	for _, tc := range []struct{ listen, table string }{{"127.0.0.1:0", procNetTCP}, {"[::1]:0", procNetTCP6}} {
		ln, err := net.Listen("tcp", tc.listen)
		if err != nil {
			t.Logf("%s: %v (no such loopback here)", tc.listen, err)
			continue
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := c.Write([]byte("POST / HTTP/1.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		c.Close()
		// Wait for the kernel to turn the closed socket into its timewait
		// form (the loopback ACK of its FIN): inode 0 in the table.
		l, r := s.LocalAddr().(*net.TCPAddr), s.RemoteAddr().(*net.TCPAddr)
		key := sockKey6(r.IP.To16(), r.Port, l.IP.To16(), l.Port)
		if r4, l4 := r.IP.To4(), l.IP.To4(); r4 != nil && l4 != nil {
			key = sockKey4(r4, r.Port, l4, l.Port)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			b, err := os.ReadFile(tc.table)
			if err != nil {
				t.Fatal(err)
			}
			if i := bytes.Index(b, key); i >= 0 {
				line, _, _ := bytes.Cut(b[i:], []byte("\n"))
				if f := bytes.Fields(line); len(f) > 8 && string(f[8]) == "0" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the closed client socket never showed as a timewait socket in %s", tc.listen, tc.table)
			}
		}
		for name, lookup := range lookups {
			if uid, err := lookup(s.LocalAddr(), s.RemoteAddr()); !errors.Is(err, errPeerNotFound) {
				t.Errorf("%s, %s: got uid %d, %v; want %v", tc.listen, name, uid, err, errPeerNotFound)
			}
		}
	}
}

// BenchmarkPeerUID is the peer check's added cost per connection: a
// sock_diag query, or one read of /proc/net/tcp and a search (the
// fallback), with the socket table as it is plus `extra` idle loopback
// connections (each two table lines).
func BenchmarkPeerUID(b *testing.B) {
	for _, tc := range []struct {
		name  string
		extra int
	}{{"sock_diag", 0}, {"sock_diag", 1000}, {"proc", 0}, {"proc", 1000}} {
		extra := tc.extra
		b.Run(fmt.Sprintf("%s/extra_conns=%d", tc.name, extra), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					defer c.Close()
				}
			}()
			for i := 0; i < extra; i++ {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
			}
			ln2, _ := net.Listen("tcp", "127.0.0.1:0")
			defer ln2.Close()
			c, _ := net.Dial("tcp", ln2.Addr().String())
			defer c.Close()
			s, _ := ln2.Accept()
			defer s.Close()
			b.ResetTimer()
			lookup := func() (int, error) { return sockDiagUID(s.RemoteAddr().(*net.TCPAddr), s.LocalAddr().(*net.TCPAddr)) }
			if tc.name == "proc" {
				lookup = func() (int, error) { var p procSnapshot; return p.scan(s.LocalAddr(), s.RemoteAddr()) }
			}
			for b.Loop() {
				if _, err := lookup(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConnection is one GOPROXY request on a fresh connection (what
// cmd/go does without keep-alive) with the peer check on and off: the
// difference is the check's added latency per connection.
func BenchmarkConnection(b *testing.B) {
	for _, check := range []bool{false, true} {
		b.Run(fmt.Sprintf("peer_check=%v", check), func(b *testing.B) {
			base := serveTest(b, ServeConfig{PeerCheck: check, JobUID: os.Getuid()})
			url := base + "/.goproxy-setup/health"
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			b.ResetTimer()
			for b.Loop() {
				resp, err := c.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

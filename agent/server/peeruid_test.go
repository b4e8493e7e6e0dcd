package server

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
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

package diagnose

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// testDNS is a tiny authoritative DNS server on 127.0.0.1 (UDP): it answers
// A and AAAA from its records and NXDOMAIN for every other name, or never
// answers at all when silent.
type testDNS struct {
	addr    string
	records map[string][]netip.Addr // lower-case FQDN → addresses
	silent  bool
}

func startDNS(t *testing.T, silent bool, records map[string][]netip.Addr) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", dnsListenAddr)
	if err != nil {
		t.Fatalf("listen DNS: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	s := &testDNS{addr: pc.LocalAddr().String(), records: map[string][]netip.Addr{}, silent: silent}
	for n, a := range records {
		s.records[strings.ToLower(strings.TrimSuffix(n, "."))+"."] = a
	}
	go s.serve(pc)
	return s
}

func (s *testDNS) serve(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if s.silent {
			continue
		}
		if out := s.answer(buf[:n]); out != nil {
			_, _ = pc.WriteTo(out, from)
		}
	}
}

func (s *testDNS) answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	question := qs[0]
	name := strings.ToLower(question.Name.String())
	addrs, known := s.records[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(question)
	_ = b.StartAnswers()
	for _, a := range addrs {
		rr := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 1}
		switch {
		case a.Is4() && question.Type == dnsmessage.TypeA:
			_ = b.AResource(rr, dnsmessage.AResource{A: a.As4()})
		case a.Is6() && question.Type == dnsmessage.TypeAAAA:
			_ = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// resolver returns a resolver that asks only this server.
func (s *testDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.addr)
	}}
}

func TestTestDNS(t *testing.T) {
	t.Parallel()
	s := startDNS(t, false, map[string][]netip.Addr{"proxy.test": {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}})
	got, err := s.resolver().LookupNetIP(context.Background(), "ip", "proxy.test")
	if err != nil || len(got) != 2 {
		t.Fatalf("LookupNetIP(proxy.test) = %v, %v; want 2 addresses", got, err)
	}
	_, err = s.resolver().LookupNetIP(context.Background(), "ip4", "missing.test")
	var de *net.DNSError
	if !asDNS(err, &de) || !de.IsNotFound {
		t.Errorf("LookupNetIP(missing.test) error = %v, want not found", err)
	}
}

func asDNS(err error, de **net.DNSError) bool {
	if err == nil {
		return false
	}
	e, ok := err.(*net.DNSError)
	if ok {
		*de = e
	}
	return ok
}

// dnsListenAddr is where startDNS listens; the go-command recorder moves it
// to port 53 inside its own network namespace.
var dnsListenAddr = "127.0.0.1:0"

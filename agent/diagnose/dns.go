package diagnose

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// The dns layer: A and AAAA separately, which server answered.

// recordingResolver resolves with the configured resolver and remembers
// which DNS server answered, for the report.
type recordingResolver struct {
	base   *net.Resolver
	dialer *net.Dialer

	mu     sync.Mutex
	server string
}

func (r *recordingResolver) resolver() *net.Resolver {
	nr := &net.Resolver{PreferGo: true}
	if r.base != nil {
		nr.StrictErrors = r.base.StrictErrors
	}
	nr.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		var c net.Conn
		var err error
		if r.base != nil && r.base.Dial != nil {
			c, err = r.base.Dial(ctx, network, address)
		} else {
			c, err = r.dialer.DialContext(ctx, network, address)
		}
		if err == nil {
			r.mu.Lock()
			r.server = c.RemoteAddr().String()
			r.mu.Unlock()
		} else {
			r.mu.Lock()
			if r.server == "" {
				r.server = address
			}
			r.mu.Unlock()
		}
		return c, err
	}
	return nr
}

func (r *recordingResolver) serverName() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.server == "" {
		return "the system resolver"
	}
	return r.server
}

// resolve is the dns step: A and AAAA separately, every address.
func (tr *targetRun) resolve(ctx context.Context) ([]netip.Addr, Check) {
	host := tr.t.URL.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, tr.check(LayerDNS, StatusOK, "", ip.String(), "IP address "+ip.String()+": no lookup", "", 0)
	}
	ctx, cancel := tr.stepCtx(ctx)
	defer cancel()
	r := tr.res.resolver()
	start := time.Now()
	var v4, v6 []netip.Addr
	var e4, e6 error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); v4, e4 = r.LookupNetIP(ctx, "ip4", host) }()
	go func() { defer wg.Done(); v6, e6 = r.LookupNetIP(ctx, "ip6", host) }()
	wg.Wait()
	d := time.Since(start)
	server := tr.res.serverName()
	var addrs []netip.Addr
	var shown []string
	for _, a := range append(v4, v6...) {
		a = a.Unmap()
		addrs = append(addrs, a)
		shown = append(shown, a.String())
	}
	if len(addrs) == 0 {
		kind, remedy := dnsKind(e4, e6, server)
		return nil, tr.check(LayerDNS, StatusFail, "", kind, fmt.Sprintf("%s: %s (resolver %s)", host, kind, server), remedy, d)
	}
	detail := fmt.Sprintf("%s → %s (resolver %s)", host, strings.Join(shown, ", "), server)
	for _, fe := range []struct {
		err error
		rec string
	}{{e4, "A"}, {e6, "AAAA"}} {
		var de *net.DNSError
		if fe.err != nil && (!errors.As(fe.err, &de) || !de.IsNotFound) {
			k, _ := dnsKind(fe.err, nil, server)
			return addrs, tr.check(LayerDNS, StatusWarn, "", round(d), detail+"; "+fe.rec+" lookup: "+k,
				fmt.Sprintf("the %s lookup fails at %s: fix that resolver or its upstream (clients wait for both answers)", fe.rec, server), d)
		}
	}
	return addrs, tr.check(LayerDNS, StatusOK, "", round(d), detail, "", d)
}

func dnsKind(e4, e6 error, server string) (kind, remedy string) {
	err := e4
	if err == nil {
		err = e6
	}
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound && (e6 == nil || isNotFound(e6)):
		return "no such host (NXDOMAIN)", "check the host name in --upstream for a typo, and that this runner uses the DNS server that knows it (internal zones need the internal resolver in /etc/resolv.conf or the VPN)"
	case isTimeout(err):
		return "DNS timeout: no answer", fmt.Sprintf("the DNS server %s does not answer: check /etc/resolv.conf and that UDP/TCP port 53 to it is open", server)
	case errors.As(err, &de) && strings.Contains(de.Err, "server misbehaving"):
		return "SERVFAIL (server misbehaving)", fmt.Sprintf("the DNS server %s failed to resolve the name (SERVFAIL): its forwarders or the zone are broken; use another resolver or retry later", server)
	case err != nil:
		return "lookup failed: " + describeErr(err), fmt.Sprintf("check the DNS configuration (/etc/resolv.conf, resolver %s)", server)
	}
	return "no addresses", "the name has no A or AAAA record: add one or use another host name in --upstream"
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errStepTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

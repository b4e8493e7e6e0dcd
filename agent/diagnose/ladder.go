package diagnose

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

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

type targetResult struct {
	checks []Check
	// reached is true when some address got an HTTP response.
	reached bool
}

type targetRun struct {
	t    Target
	o    Options
	res  *recordingResolver
	name string
}

func (tr *targetRun) check(layer string, st Status, addr, value, detail, remedy string, d time.Duration) Check {
	return Check{Target: tr.name, Address: addr, Layer: layer, Status: st, Value: value, Detail: detail, Remedy: remedy, Duration: d}
}

func (tr *targetRun) skips(addr, reason string, layers ...string) []Check {
	var cs []Check
	for _, l := range layers {
		cs = append(cs, tr.check(l, StatusSkip, addr, "", "skipped: "+reason, "", 0))
	}
	return cs
}

func (tr *targetRun) stepCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, tr.o.Step)
}

func (tr *targetRun) port() string {
	if p := tr.t.URL.Port(); p != "" {
		return p
	}
	if tr.t.URL.Scheme == "http" {
		return "80"
	}
	return "443"
}

func (tr *targetRun) run(ctx context.Context) targetResult {
	u := tr.t.URL
	if u == nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return targetResult{checks: []Check{tr.check(LayerEnv, StatusFail, "", "", fmt.Sprintf("upstream %q is not an http(s) URL with a host", tr.name),
			"give --upstream as https://host[:port][/path] entries separated by ',' or '|'", 0)}}
	}
	proxyURL, err := tr.o.Proxy(&http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}})
	if err != nil {
		return targetResult{checks: append([]Check{tr.check(LayerProxy, StatusFail, "", "", "proxy setting is not a valid URL: "+describeErr(err),
			"fix or unset HTTPS_PROXY/HTTP_PROXY (scheme://host:port)", 0)},
			tr.skips("", "no usable proxy setting", LayerTLS, LayerClientCert, LayerClock, LayerHTTP)...)}
	}
	if proxyURL != nil {
		return tr.viaProxy(ctx, proxyURL)
	}
	addrs, c := tr.resolve(ctx)
	checks := []Check{c}
	if c.Status == StatusFail {
		checks = append(checks, tr.skips("", "the name did not resolve", LayerTCP, LayerTLS, LayerClientCert, LayerClock, LayerHTTP)...)
		return targetResult{checks: checks}
	}
	per := make([][]Check, len(addrs))
	reached := make([]bool, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hp := net.JoinHostPort(a.String(), tr.port())
			per[i], reached[i] = tr.direct(ctx, hp)
		}()
	}
	wg.Wait()
	anyReached := false
	for _, r := range reached {
		anyReached = anyReached || r
	}
	for i, cs := range per {
		if anyReached && !reached[i] {
			cs = downgrade(cs, addrs[i], addrs)
		}
		checks = append(checks, cs...)
	}
	return targetResult{checks: checks, reached: anyReached}
}

// downgrade turns the failures of an address into warnings when another
// address of the same name works: cmd/go's dialer falls back to it, slower.
func downgrade(cs []Check, bad netip.Addr, all []netip.Addr) []Check {
	fam, other, rec := "IPv6", "IPv4", "AAAA"
	if bad.Is4() {
		fam, other, rec = "IPv4", "IPv6", "A"
	}
	out := make([]Check, len(cs))
	for i, c := range cs {
		if c.Status == StatusFail {
			c.Status = StatusWarn
			c.Detail += fmt.Sprintf(" (%s works; clients fall back to it after a delay)", other)
			c.Remedy = fmt.Sprintf("the %s path to this host fails while %s works: fix %s on the server side (listener, firewall, route) or remove the name's %s record; then: %s", fam, other, fam, rec, c.Remedy)
		}
		out[i] = c
	}
	return out
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

var errStepTimeout = errors.New("step deadline exceeded")

// direct runs the ladder against one address: tcp, then the session.
func (tr *targetRun) direct(ctx context.Context, hp string) ([]Check, bool) {
	sctx, cancel := tr.stepCtx(ctx)
	start := time.Now()
	conn, err := tr.o.Dialer.DialContext(sctx, "tcp", hp)
	cancel()
	d := time.Since(start)
	rest := []string{LayerTLS, LayerClientCert, LayerClock, LayerHTTP}
	if err != nil {
		kind, remedy := tcpKind(err, hp, tr.o.Step)
		return append([]Check{tr.check(LayerTCP, StatusFail, hp, kind, fmt.Sprintf("connect to %s: %s after %s", hp, kind, round(d)), remedy, d)},
			tr.skips(hp, "TCP connect failed", rest...)...), false
	}
	defer conn.Close()
	checks := []Check{tr.check(LayerTCP, StatusOK, hp, round(d), "connected to "+hp, "", d)}
	cs, ok := tr.session(ctx, conn, hp, nil)
	return append(checks, cs...), ok
}

func tcpKind(err error, hp string, step time.Duration) (kind, remedy string) {
	msg := describeErr(err)
	switch {
	case strings.Contains(msg, "connection refused"):
		return "refused", fmt.Sprintf("nothing listens on %s: check the port in --upstream and that the proxy server runs there", hp)
	case isTimeout(err):
		return "timeout", fmt.Sprintf("no answer from %s within %s: a firewall drops the packets or the server is overloaded; check security groups/firewall rules for this runner", hp, step)
	case strings.Contains(msg, "no route to host"), strings.Contains(msg, "network is unreachable"), strings.Contains(msg, "host is unreachable"):
		return "unreachable", fmt.Sprintf("no route to %s: check this runner's network (routes, VPN, IPv6 availability)", hp)
	}
	return msg, fmt.Sprintf("cannot connect to %s: check the network path", hp)
}

// viaProxy runs the ladder through an HTTP proxy: the proxy resolves the
// upstream's name, so dns and tcp belong to it.
func (tr *targetRun) viaProxy(ctx context.Context, pu *url.URL) targetResult {
	pname := redact.URL(pu)
	paddr := pu.Host
	if pu.Port() == "" {
		paddr = net.JoinHostPort(pu.Hostname(), map[string]string{"https": "443"}[pu.Scheme]+map[bool]string{true: "80"}[pu.Scheme != "https"])
	}
	checks := tr.skips("", "the proxy "+pname+" resolves and connects", LayerDNS, LayerTCP)
	rest := []string{LayerTLS, LayerClientCert, LayerClock, LayerHTTP}
	remedyProxy := fmt.Sprintf("HTTPS_PROXY/HTTP_PROXY point at %s, which %%s: fix the proxy setting, or add %s to NO_PROXY if the upstream is reachable directly", pname, tr.t.URL.Hostname())

	sctx, cancel := tr.stepCtx(ctx)
	defer cancel()
	start := time.Now()
	d := *tr.o.Dialer
	if d.Resolver == nil {
		d.Resolver = tr.res.resolver()
	}
	conn, err := d.DialContext(sctx, "tcp", paddr)
	if err != nil {
		dd := time.Since(start)
		kind, _ := tcpKind(err, paddr, tr.o.Step)
		checks = append(checks, tr.check(LayerProxy, StatusFail, paddr, kind, fmt.Sprintf("connect to proxy %s: %s after %s", pname, kind, round(dd)),
			fmt.Sprintf(remedyProxy, "cannot be reached ("+kind+")"), dd))
		return targetResult{checks: append(checks, tr.skips(paddr, "the proxy is unreachable", rest...)...)}
	}
	defer conn.Close()
	if pu.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: pu.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(sctx); err != nil {
			dd := time.Since(start)
			checks = append(checks, tr.check(LayerProxy, StatusFail, paddr, "tls", "TLS to proxy "+pname+": "+describeErr(err),
				fmt.Sprintf(remedyProxy, "fails the TLS handshake"), dd))
			return targetResult{checks: append(checks, tr.skips(paddr, "the proxy is unreachable", rest...)...)}
		}
		conn = tc
	}
	var plain bool
	if tr.t.URL.Scheme == "https" {
		hostport := net.JoinHostPort(tr.t.URL.Hostname(), tr.port())
		req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: hostport}, Host: hostport, Header: http.Header{}}
		if pu.User != nil {
			pw, _ := pu.User.Password()
			req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(pu.User.Username()+":"+pw)))
		}
		dl, _ := sctx.Deadline()
		_ = conn.SetDeadline(dl)
		br := bufio.NewReader(conn)
		err := req.Write(conn)
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(br, req)
		}
		dd := time.Since(start)
		if err != nil {
			kind := describeErr(err)
			if isTimeout(err) {
				kind = "no answer to CONNECT within " + tr.o.Step.String()
			}
			checks = append(checks, tr.check(LayerProxy, StatusFail, paddr, "", "CONNECT "+hostport+" via "+pname+": "+kind,
				fmt.Sprintf(remedyProxy, "does not complete CONNECT"), dd))
			return targetResult{checks: append(checks, tr.skips(paddr, "CONNECT failed", rest...)...)}
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			why := "refuses CONNECT to " + hostport + " with " + resp.Status
			if resp.StatusCode == http.StatusProxyAuthRequired {
				why = "wants credentials (407): put them in the proxy URL (http://user:password@host:port)"
			}
			checks = append(checks, tr.check(LayerProxy, StatusFail, paddr, strconv.Itoa(resp.StatusCode), "CONNECT "+hostport+" via "+pname+": "+resp.Status,
				fmt.Sprintf(remedyProxy, why), dd))
			return targetResult{checks: append(checks, tr.skips(paddr, "CONNECT failed", rest...)...)}
		}
		if br.Buffered() > 0 {
			conn = &bufConn{Conn: conn, r: br}
		}
		_ = conn.SetDeadline(time.Time{})
		checks = append(checks, tr.check(LayerProxy, StatusOK, paddr, round(dd), fmt.Sprintf("CONNECT %s via %s in %s", hostport, pname, round(dd)), "", dd))
	} else {
		plain = true
		dd := time.Since(start)
		checks = append(checks, tr.check(LayerProxy, StatusOK, paddr, round(dd), fmt.Sprintf("connected to proxy %s in %s", pname, round(dd)), "", dd))
	}
	var proxyAuth string
	if plain && pu.User != nil {
		pw, _ := pu.User.Password()
		proxyAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(pu.User.Username()+":"+pw))
	}
	cs, ok := tr.session(ctx, conn, paddr, &proxyMode{plain: plain, auth: proxyAuth})
	return targetResult{checks: append(checks, cs...), reached: ok}
}

type proxyMode struct {
	plain bool // plain HTTP through the proxy: absolute-form request
	auth  string
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// hsInfo records what the TLS handshake showed about client certificates.
type hsInfo struct {
	mu         sync.Mutex
	requested  bool
	acceptable [][]byte
	sent       *tls.Certificate
	getErr     error
}

// session runs tls, client-cert, clock and http over an open connection. It
// reports whether an HTTP response arrived.
func (tr *targetRun) session(ctx context.Context, conn net.Conn, addr string, pm *proxyMode) ([]Check, bool) {
	var tlsCheck *Check
	info := &hsInfo{}
	var handshakeAlert string
	if tr.t.URL.Scheme == "https" {
		c, tconn, alert := tr.handshake(ctx, conn, addr, info)
		handshakeAlert = alert
		if tconn == nil {
			// Handshake failed: decide whether the client certificate
			// is to blame.
			if alert != "" && info.requested {
				tls := tr.check(LayerTLS, StatusOK, addr, "", "server certificate not checked: the server aborted the handshake after asking for a client certificate", "", c.Duration)
				cc := tr.clientCertCheck(addr, info, "alert \""+alert+"\" during the handshake")
				return append([]Check{tls, cc}, tr.skips(addr, "the client certificate was rejected", LayerClock, LayerHTTP)...), false
			}
			return append([]Check{c}, tr.skips(addr, "TLS failed", LayerClientCert, LayerClock, LayerHTTP)...), false
		}
		conn = tconn
		tlsCheck = &c
	}

	h := tr.httpStep(ctx, conn, addr, pm)
	var checks []Check
	if tlsCheck != nil {
		checks = append(checks, *tlsCheck)
		rejection := handshakeAlert
		if h.alert != "" {
			rejection = "alert \"" + h.alert + "\" after the handshake"
		} else if h.resp != nil && h.resp.StatusCode == http.StatusBadRequest && strings.Contains(h.body, "SSL certificate") {
			rejection = "HTTP 400 \"" + nginxReason(h.body) + "\""
		}
		cc := tr.clientCertCheck(addr, info, rejection)
		checks = append(checks, cc)
		if cc.Status == StatusFail {
			return append(checks, tr.skips(addr, "the client certificate was rejected", LayerClock, LayerHTTP)...), false
		}
	} else {
		checks = append(checks, tr.skips(addr, "plain http:// upstream", LayerTLS, LayerClientCert)...)
	}
	checks = append(checks, tr.clockCheck(addr, h), h.check)
	return checks, h.resp != nil && h.check.Status != StatusFail
}

func nginxReason(body string) string {
	for _, s := range []string{"No required SSL certificate was sent", "The SSL certificate error", "SSL certificate error"} {
		if strings.Contains(body, s) {
			return s
		}
	}
	return "SSL certificate"
}

// handshake is the tls step. On failure it returns a nil conn and, when the
// server sent an alert, its text.
func (tr *targetRun) handshake(ctx context.Context, conn net.Conn, addr string, info *hsInfo) (Check, *tls.Conn, string) {
	host := tr.t.URL.Hostname()
	cfg := &tls.Config{
		ServerName: host,
		RootCAs:    tr.t.Roots,
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		Time:       tr.o.Now,
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			info.mu.Lock()
			defer info.mu.Unlock()
			info.requested = true
			info.acceptable = cri.AcceptableCAs
			if tr.t.GetClientCertificate == nil {
				return &tls.Certificate{}, nil
			}
			c, err := tr.t.GetClientCertificate(cri)
			if err != nil || c == nil {
				info.getErr = err
				return &tls.Certificate{}, nil
			}
			info.sent = c
			return c, nil
		},
	}
	sctx, cancel := tr.stepCtx(ctx)
	defer cancel()
	start := time.Now()
	tc := tls.Client(conn, cfg)
	err := tc.HandshakeContext(sctx)
	d := time.Since(start)
	if err == nil {
		cs := tc.ConnectionState()
		return tr.tlsOK(addr, cs, d), tc, ""
	}
	alert := remoteAlert(err)
	detail, remedy, value := tlsFailure(err, host, tr.o.Step, tr.o.Now())
	return tr.check(LayerTLS, StatusFail, addr, value, detail, remedy, d), nil, alert
}

func (tr *targetRun) tlsOK(addr string, cs tls.ConnectionState, d time.Duration) Check {
	ver := tls.VersionName(cs.Version)
	detail := fmt.Sprintf("%s, %s", ver, tls.CipherSuiteName(cs.CipherSuite))
	st, remedy := StatusOK, ""
	if len(cs.VerifiedChains) > 0 {
		chain := cs.VerifiedChains[0]
		var names []string
		for _, c := range chain {
			names = append(names, certName(c))
		}
		leaf := chain[0]
		left := leaf.NotAfter.Sub(tr.o.Now())
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		detail += fmt.Sprintf("; chain %s; expires in %s", strings.Join(names, " ← "), roundDays(left))
		// Short-lived certificates are normal (step-ca issues 24h ones):
		// warn only when less than a tenth of the lifetime and less than a
		// week are left.
		if left < 7*24*time.Hour && left < life/10 {
			st, remedy = StatusWarn, "the upstream's certificate expires in "+roundDays(left)+": renew it on the server"
		}
	}
	return tr.check(LayerTLS, st, addr, ver, detail, remedy, d)
}

func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return "\"" + c.Subject.CommonName + "\""
	}
	return "\"" + c.Subject.String() + "\""
}

func roundDays(d time.Duration) string {
	if d >= 48*time.Hour {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.Round(time.Minute).String()
}

// remoteAlert returns the text of a TLS alert the peer sent ("certificate
// required"), or "".
func remoteAlert(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	const p = "remote error: tls: "
	if i := strings.Index(msg, p); i >= 0 {
		alert := msg[i+len(p):]
		// Alert names have no parentheses; what follows is a wrapper's.
		if j := strings.Index(alert, " ("); j >= 0 {
			alert = alert[:j]
		}
		return alert
	}
	return ""
}

func tlsFailure(err error, host string, step time.Duration, now time.Time) (detail, remedy, value string) {
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	switch {
	case errors.As(err, &cve):
		return verifyFailure(cve, host, now)
	case errors.As(err, &rhe):
		return "the server does not speak TLS on this port", "use http:// for a plain-HTTP upstream, or the port where it serves TLS", "not TLS"
	case isTimeout(err):
		return "TLS handshake timed out after " + step.String(), "the server accepts TCP but does not finish the TLS handshake: check the port, the server's load, or a middlebox on the path", "timeout"
	case remoteAlert(err) != "":
		a := remoteAlert(err)
		return "the server aborted the handshake with alert \"" + a + "\"", "the server refuses our TLS parameters (TLS 1.2+ with modern ciphers): check its ssl_protocols/ssl_ciphers", a
	case errors.Is(err, io.EOF), strings.Contains(err.Error(), "connection reset"):
		return "the server closed the connection during the TLS handshake", "the server (or a proxy or load balancer in front of it) drops TLS on this port: check its TLS configuration and logs", "closed"
	}
	return "TLS handshake: " + describeErr(err), "check the upstream's TLS configuration", "error"
}

func verifyFailure(cve *tls.CertificateVerificationError, host string, now time.Time) (detail, remedy, value string) {
	chain := cve.UnverifiedCertificates
	var cie x509.CertificateInvalidError
	var he x509.HostnameError
	var uae x509.UnknownAuthorityError
	switch {
	case errors.As(cve.Err, &cie) && cie.Reason == x509.Expired:
		c := cie.Cert
		if now.Before(c.NotBefore) {
			return fmt.Sprintf("server certificate %s is not valid until %s (now %s)", certName(c), c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
				"the certificate is not valid yet: check this runner's clock (NTP) and the server's", "not yet valid"
		}
		return fmt.Sprintf("server certificate %s expired at %s (%s ago)", certName(c), c.NotAfter.UTC().Format(time.RFC3339), roundDays(now.Sub(c.NotAfter))),
			"the upstream's certificate has expired: renew it on the server (or fix this runner's clock if it is wrong)", "expired"
	case errors.As(cve.Err, &he):
		names := he.Certificate.DNSNames
		for _, ip := range he.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
		return fmt.Sprintf("server certificate is for %s, not %q", strings.Join(names, ", "), host),
			fmt.Sprintf("use a host name the certificate names in --upstream, or reissue the server certificate with %q in its subject alternative names", host), "name mismatch"
	case errors.As(cve.Err, &uae):
		if len(chain) == 1 && !selfSigned(chain[0]) {
			leaf := chain[0]
			return fmt.Sprintf("incomplete chain: the server sent only its leaf %s; intermediate %q is missing", certName(leaf), leaf.Issuer.String()),
				fmt.Sprintf("configure the server to send the full chain (leaf followed by intermediate %q; nginx: ssl_certificate with the chain file), or if that CA is unknown here, pass its root with --ca-cert", leaf.Issuer.CommonName), "incomplete chain"
		}
		top := chain[len(chain)-1]
		issuer := top.Issuer.String()
		return fmt.Sprintf("server certificate %s signed by unknown authority %q", certName(chain[0]), issuer),
			fmt.Sprintf("pass the upstream's root CA (%q) with --ca-cert (GOPROXY_SETUP_CA_CERT)", top.Issuer.CommonName), "unknown authority"
	}
	return "server certificate: " + describeErr(cve.Err), "check the upstream's certificate chain", "invalid"
}

func selfSigned(c *x509.Certificate) bool {
	return string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// clientCertCheck is the client-cert step, judged after the server had its
// say: rejection is "" when the server accepted.
func (tr *targetRun) clientCertCheck(addr string, info *hsInfo, rejection string) Check {
	info.mu.Lock()
	defer info.mu.Unlock()
	now := tr.o.Now()
	leaf := tr.t.ClientLeaf
	var chain [][]byte
	if info.sent != nil {
		chain = info.sent.Certificate
		if leaf == nil {
			leaf = info.sent.Leaf
		}
		if leaf == nil && len(chain) > 0 {
			leaf, _ = x509.ParseCertificate(chain[0])
		}
	}
	if !info.requested {
		if rejection != "" {
			return tr.check(LayerClientCert, StatusFail, addr, "not requested", "the server did not ask for a client certificate but rejected the connection: "+rejection,
				"check the server's TLS client authentication settings", 0)
		}
		return tr.check(LayerClientCert, StatusOK, addr, "not requested", "the server did not ask for a client certificate", "", 0)
	}
	accepted := acceptableNames(info.acceptable)
	acceptDetail := "server accepts any CA"
	if len(accepted) > 0 {
		acceptDetail = "server accepts " + strings.Join(accepted, ", ")
	}
	if info.sent == nil || len(chain) == 0 {
		if rejection != "" {
			return tr.check(LayerClientCert, StatusFail, addr, "not sent", "the server requires a client certificate and none was sent; rejected with "+rejection+"; "+acceptDetail,
				"pass the client certificate and key: --client-cert/--client-key (GOPROXY_SETUP_CLIENT_CERT/GOPROXY_SETUP_CLIENT_KEY), or enrol with 'goproxy-setup enroll'", 0)
		}
		return tr.check(LayerClientCert, StatusOK, addr, "not sent", "the server asked for a client certificate (optional) and none was sent; "+acceptDetail, "", 0)
	}
	var problems []string
	remedy := ""
	ours := "ours"
	if leaf != nil {
		ours = fmt.Sprintf("ours %s (issuer %q)", certName(leaf), leaf.Issuer.CommonName)
		switch {
		case now.After(leaf.NotAfter):
			problems = append(problems, fmt.Sprintf("expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339)))
			remedy = "the client certificate expired: renew it ('goproxy-setup enroll') or pass a current one with --client-cert/--client-key"
		case now.Before(leaf.NotBefore):
			problems = append(problems, fmt.Sprintf("not valid until %s", leaf.NotBefore.UTC().Format(time.RFC3339)))
			remedy = "the client certificate is not valid yet: check this runner's clock (NTP) and the CA's"
		}
	}
	if len(info.acceptable) > 0 && !issuedByAny(chain, info.acceptable) {
		problems = append(problems, "not issued by a CA the server accepts")
		if remedy == "" {
			remedy = fmt.Sprintf("use a client certificate issued by a CA the server accepts (%s), or add our issuer to the server's client CA list (nginx: ssl_client_certificate)", strings.Join(accepted, ", "))
		}
	}
	detail := ours
	if len(problems) > 0 {
		detail += ": " + strings.Join(problems, ", ")
	}
	detail += "; " + acceptDetail
	if rejection != "" {
		if remedy == "" {
			remedy = "the server rejected a certificate that looks valid here: check that the server's client CA list (nginx: ssl_client_certificate, ssl_verify_depth) includes our issuer and that it is not revoked"
		}
		return tr.check(LayerClientCert, StatusFail, addr, "rejected", "rejected with "+rejection+"; "+detail, remedy, 0)
	}
	if len(problems) > 0 {
		return tr.check(LayerClientCert, StatusWarn, addr, "accepted", "the server accepted "+detail, remedy, 0)
	}
	value := "sent"
	if leaf != nil {
		value = "expires in " + roundDays(leaf.NotAfter.Sub(now))
	}
	return tr.check(LayerClientCert, StatusOK, addr, value, "sent "+detail, "", 0)
}

func acceptableNames(dns [][]byte) []string {
	var out []string
	for _, d := range dns {
		var n pkixName
		if s, ok := n.parse(d); ok {
			out = append(out, "\""+s+"\"")
		}
	}
	return out
}

func issuedByAny(chain [][]byte, acceptable [][]byte) bool {
	for _, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			continue
		}
		for _, a := range acceptable {
			if string(c.RawIssuer) == string(a) || string(c.RawSubject) == string(a) {
				return true
			}
		}
	}
	return false
}

// httpResult is what the http step saw.
type httpResult struct {
	check Check
	resp  *http.Response
	body  string // the first bytes of an error body
	alert string // a TLS alert received instead of a response
	date  time.Time
	at    time.Time
}

const sampleBytes = 1 << 20

// httpStep is the http layer: GET <module>/@v/list (or the base URL), time
// to first byte, a sampled throughput.
func (tr *targetRun) httpStep(ctx context.Context, conn net.Conn, addr string, pm *proxyMode) httpResult {
	u := *tr.t.URL
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	probe := "/"
	if tr.t.Module != "" {
		path, _, _ := strings.Cut(tr.t.Module, "@")
		esc, err := module.EscapePath(path)
		if err != nil {
			esc = path
		}
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + esc + "/@v/list"
		u.RawPath = ""
		probe = esc + "/@v/list"
	} else if u.Path == "" {
		u.Path = "/"
	}
	sctx, cancel := tr.stepCtx(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return httpResult{check: tr.check(LayerHTTP, StatusFail, addr, "", "build request: "+describeErr(err), "check --upstream", 0)}
	}
	req.Header.Set("User-Agent", "goproxy-setup-diagnose")
	req.Close = true
	dl, _ := sctx.Deadline()
	_ = conn.SetDeadline(dl)
	stop := context.AfterFunc(sctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	start := time.Now()
	if pm != nil && pm.plain {
		if pm.auth != "" {
			req.Header.Set("Proxy-Authorization", pm.auth)
		}
		err = req.WriteProxy(conn)
	} else {
		err = req.Write(conn)
	}
	br := bufio.NewReader(conn)
	if err == nil {
		_, err = br.Peek(1)
	}
	ttfb := time.Since(start)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	if err != nil {
		d := time.Since(start)
		if a := remoteAlert(err); a != "" {
			return httpResult{alert: a, check: tr.check(LayerHTTP, StatusSkip, addr, "", "skipped: the server sent TLS alert \""+a+"\"", "", d)}
		}
		if isTimeout(err) {
			return httpResult{check: tr.check(LayerHTTP, StatusFail, addr, "timeout", fmt.Sprintf("GET %s: no response within %s", probe, tr.o.Step),
				"the upstream accepts the request but does not answer: check its health and logs (and any proxy in between)", d)}
		}
		return httpResult{check: tr.check(LayerHTTP, StatusFail, addr, "error", fmt.Sprintf("GET %s: %s", probe, describeErr(err)),
			"the upstream closed the connection without an HTTP response: check its logs", d)}
	}
	at := tr.o.Now()
	res := httpResult{resp: resp, at: at}
	if ds := resp.Header.Get("Date"); ds != "" {
		if t, err := http.ParseTime(ds); err == nil {
			res.date = t
		}
	}
	bodyStart := time.Now()
	var n int64
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		res.body = string(b)
		n = int64(len(b))
	} else {
		n, err = io.Copy(io.Discard, io.LimitReader(resp.Body, sampleBytes))
	}
	bodyDur := time.Since(bodyStart)
	resp.Body.Close()
	d := time.Since(start)
	status := strconv.Itoa(resp.StatusCode)
	if err != nil && resp.StatusCode < 300 {
		why := describeErr(err)
		if isTimeout(err) {
			why = fmt.Sprintf("stalled: no data for %s", tr.o.Step)
		}
		res.check = tr.check(LayerHTTP, StatusFail, addr, "stalled", fmt.Sprintf("GET %s: %s, then the body stopped after %d bytes: %s", probe, resp.Status, n, why),
			"the upstream (or a proxy in between) stops sending mid-response: check its logs, buffering and timeouts; cmd/go reports this as 'unexpected EOF' or a timeout", d)
		return res
	}
	rate := ""
	if n > 0 && bodyDur > 0 {
		rate = fmt.Sprintf(", %s/s over %d bytes", humanBytes(float64(n)/bodyDur.Seconds()), n)
	}
	detail := fmt.Sprintf("GET %s: %s; first byte %s%s", probe, resp.Status, round(ttfb), rate)
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		res.check = tr.check(LayerHTTP, StatusOK, addr, status, detail, "", d)
	case (c == 404 || c == 410) && tr.t.Module != "":
		res.check = tr.check(LayerHTTP, StatusWarn, addr, status, detail+": module not found at this upstream",
			"not a failure: the module path is not served here (cmd/go tries the next entry after ','); check the module path and version, or the route that sends it to this upstream", d)
	case c == 404 || c == 410:
		res.check = tr.check(LayerHTTP, StatusOK, addr, status, detail+" (the base URL need not serve anything)", "", d)
	case c >= 300 && c < 400:
		res.check = tr.check(LayerHTTP, StatusWarn, addr, status, detail+" → "+redact.URLString(resp.Header.Get("Location")),
			"the upstream redirects; the client certificate is not presented to another host: use the final URL in --upstream", d)
	case c == 401:
		res.check = tr.check(LayerHTTP, StatusFail, addr, status, detail, "the upstream wants credentials beyond the client certificate: configure them for goproxy-setup's upstream (GOAUTH/.netrc are not sent upstream)", d)
	case c == 403:
		res.check = tr.check(LayerHTTP, StatusFail, addr, status, detail, "the upstream knows us but refuses this path: check the certificate's authorisation (subject, groups) on the server and the module route", d)
	case c == 400:
		res.check = tr.check(LayerHTTP, StatusFail, addr, status, detail+": "+firstLine(res.body), "the upstream rejects the request: check --upstream's path (it must be the GOPROXY base URL)", d)
	case c >= 500:
		res.check = tr.check(LayerHTTP, StatusFail, addr, status, detail, "the upstream itself fails (server error): check its logs and health, and what it proxies to; retry later", d)
	default:
		res.check = tr.check(LayerHTTP, StatusFail, addr, status, detail, "unexpected status: check --upstream's path and the server's logs", d)
	}
	return res
}

func (tr *targetRun) clockCheck(addr string, h httpResult) Check {
	if h.resp == nil {
		return tr.check(LayerClock, StatusSkip, addr, "", "skipped: no HTTP response", "", 0)
	}
	if h.date.IsZero() {
		return tr.check(LayerClock, StatusSkip, addr, "", "skipped: the server sent no Date header", "", 0)
	}
	// Date has whole seconds: take the middle of its second.
	skew := h.date.Add(500 * time.Millisecond).Sub(h.at).Round(time.Second)
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	sign := "+"
	if skew < 0 {
		sign = "-"
	}
	value := sign + abs.String()
	detail := fmt.Sprintf("server clock %s from ours (Date: %s)", value, h.date.UTC().Format(time.RFC1123))
	remedy := "a clock is wrong, here or on the server, which breaks certificate validity checks (short-lived certificates first): sync both with NTP (timedatectl set-ntp true; chronyc makestep)"
	switch {
	case abs >= 5*time.Minute:
		return tr.check(LayerClock, StatusFail, addr, value, detail, remedy, 0)
	case abs >= 30*time.Second:
		return tr.check(LayerClock, StatusWarn, addr, value, detail, remedy, 0)
	}
	return tr.check(LayerClock, StatusOK, addr, value, detail, "", 0)
}

func firstLine(s string) string {
	s = strings.TrimSpace(stripTags(s))
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>':
			in = false
			b.WriteByte(' ')
		case !in:
			b.WriteRune(r)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

func humanBytes(f float64) string {
	switch {
	case f >= 1<<30:
		return fmt.Sprintf("%.1f GiB", f/(1<<30))
	case f >= 1<<20:
		return fmt.Sprintf("%.1f MiB", f/(1<<20))
	case f >= 1<<10:
		return fmt.Sprintf("%.1f KiB", f/(1<<10))
	}
	return fmt.Sprintf("%.0f B", f)
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return strconv.Itoa(n) + " " + s + "s"
}

// describeErr is err's message without any URL a *url.Error would add.
func describeErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

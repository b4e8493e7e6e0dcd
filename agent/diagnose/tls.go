package diagnose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// The tls layer: the handshake, the server chain and the session over it.

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
		} else if h.resp != nil {
			if r, ok := tlsauth.RefusedBy(h.resp.StatusCode, h.body); ok {
				rejection = fmt.Sprintf("HTTP %d %q", h.resp.StatusCode, r.Reason)
			}
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

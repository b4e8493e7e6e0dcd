package diagnose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
)

// Classify places a single transport error on a layer (dns, tcp, proxy,
// tls, client-cert, http, or timeout when a deadline passed somewhere it
// cannot tell) and gives a one-line remedy. It is cheap and does no I/O:
// the agent uses it at once, before a full ladder has run.
func Classify(err error) (layer string, remedy string) {
	if err == nil {
		return "", ""
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsNotFound:
			return LayerDNS, "the upstream's host name does not resolve (NXDOMAIN): check it for a typo and that this runner uses the DNS server that knows it"
		case de.IsTimeout:
			return LayerDNS, "the DNS server does not answer: check /etc/resolv.conf and the path to it"
		}
		return LayerDNS, "the upstream's host name did not resolve: check the DNS configuration (/etc/resolv.conf)"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "proxyconnect" {
		return LayerProxy, "the HTTP proxy (HTTPS_PROXY/HTTP_PROXY) cannot be reached: fix the setting, or add the upstream to NO_PROXY"
	}
	if a := remoteAlert(err); a != "" {
		switch a {
		case "certificate required", "unknown certificate authority", "bad certificate", "expired certificate",
			"certificate revoked", "unsupported certificate", "certificate unknown", "access denied":
			return LayerClientCert, "the upstream rejected the client certificate (" + a + "): check --client-cert/--client-key, its expiry and issuer; run 'goproxy-setup diagnose'"
		}
		return LayerTLS, "the upstream aborted the TLS handshake (" + a + "): check its TLS configuration"
	}
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var he x509.HostnameError
	var cie x509.CertificateInvalidError
	var rhe tls.RecordHeaderError
	switch {
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &he), errors.As(err, &cie):
		inner := err
		if cve != nil {
			inner = cve.Err
		}
		switch {
		case errors.As(inner, &he):
			return LayerTLS, "the upstream's certificate is for another name: use the name it was issued for in --upstream, or reissue it"
		case errors.As(inner, &cie) && cie.Reason == x509.Expired:
			return LayerTLS, "the upstream's certificate is expired or not yet valid: renew it on the server, or fix this runner's clock"
		case errors.As(inner, &uae):
			return LayerTLS, "the upstream's certificate is signed by an unknown authority or sent without its intermediate: pass its root with --ca-cert, or make the server send the full chain"
		}
		return LayerTLS, "the upstream's certificate did not verify: run 'goproxy-setup diagnose'"
	case errors.As(err, &rhe), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return LayerTLS, "the upstream does not speak TLS on this port: use http:// or the TLS port"
	}
	if errors.As(err, &oe) && oe.Op == "dial" {
		switch {
		case isTimeout(err):
			return LayerTCP, "connecting to the upstream timed out: a firewall drops the packets or the server is down"
		case strings.Contains(err.Error(), "connection refused"):
			return LayerTCP, "the upstream refused the connection: nothing listens on that port; check --upstream's port and the server"
		}
		return LayerTCP, "cannot connect to the upstream: check the network path (routes, firewall, VPN)"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return LayerHTTP, "the upstream closed the connection mid-response: check its logs (and any proxy in between)"
	}
	if isTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return LayerTimeout, "the upstream did not answer in time: raise --timeout or run 'goproxy-setup diagnose' to find the slow layer"
	}
	return LayerHTTP, "the request to the upstream failed: run 'goproxy-setup diagnose' for a layer-by-layer report"
}

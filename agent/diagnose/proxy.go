package diagnose

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// The proxy layer: the ladder through an HTTP CONNECT (or plain) proxy.

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

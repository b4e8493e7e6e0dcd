package upstream

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func pinOf(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
}

func originClient(t *testing.T, srv *httptest.Server, o Origin) *Client {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	o.Host, o.Roots = u.Host, pool
	tr := NewTransport(TransportOptions{Origins: []Origin{o}, Timeouts: DefaultTimeouts(0), Retry: Retry{Attempts: 3}})
	return New(Options{Entries: []Entry{{URL: u}}, Transport: tr})
}

func TestOriginPins(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	good := originClient(t, srv, Origin{SPKIPins: []string{"sha256/bm90IHRoaXMgb25l", pinOf(srv.Certificate())}})
	if resp, err := good.Get(context.Background(), "example.com/m/@v/list"); err != nil {
		t.Fatalf("pinned key present: %v", err)
	} else {
		resp.Body.Close()
	}
	bad := originClient(t, srv, Origin{SPKIPins: []string{"sha256/bm90IHRoaXMgb25l"}})
	before := hits.Load()
	_, err := bad.Get(context.Background(), "example.com/m/@v/list")
	var pe *PinError
	if !errors.As(err, &pe) {
		t.Fatalf("no pinned key in the chain: error %v, want a *PinError", err)
	}
	if hits.Load() != before {
		t.Errorf("a request reached the server despite the pin mismatch")
	}
}

func TestOriginBearerTokenStaysWithItsOrigin(t *testing.T) {
	t.Parallel()
	const canary = "tok-CANARY-55aa"
	var otherAuth atomic.Value
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherAuth.Store(r.Header.Get("Authorization"))
	}))
	defer other.Close()
	var originAuth atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originAuth.Store(r.Header.Get("Authorization"))
		// Redirect to another host: example.com (in the test certificate),
		// dialled on loopback by the test's dialer.
		to := strings.Replace(other.URL, "127.0.0.1", "example.com", 1)
		http.Redirect(w, r, to+r.URL.Path, http.StatusFound)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	pool.AddCert(other.Certificate())
	loopback := func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
	}
	tr := NewTransport(TransportOptions{Origins: []Origin{{Host: u.Host, Roots: pool, BearerToken: canary}}, Timeouts: DefaultTimeouts(0), DialContext: loopback})
	c := New(Options{Entries: []Entry{{URL: u}}, Transport: tr})
	resp, err := c.Get(context.Background(), "example.com/m/@v/list")
	if err != nil {
		t.Fatalf("Get through the redirect: %v", err)
	}
	resp.Body.Close()
	if got, _ := originAuth.Load().(string); got != "Bearer "+canary {
		t.Errorf("origin saw Authorization %q, want the bearer token", got)
	}
	if got, _ := otherAuth.Load().(string); got != "" {
		t.Errorf("redirect target on another host saw Authorization %q, want none", got)
	}
}

func TestOriginMinTLS13(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	if _, err := originClient(t, srv, Origin{MinTLSVersion: tls.VersionTLS13}).Get(context.Background(), "example.com/m/@v/list"); err == nil {
		t.Fatal("a TLS 1.2-only server was accepted with min_tls_version 1.3")
	}
	if resp, err := originClient(t, srv, Origin{}).Get(context.Background(), "example.com/m/@v/list"); err != nil {
		t.Fatalf("TLS 1.2 with the default minimum: %v", err)
	} else {
		resp.Body.Close()
	}
}

package diagnose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

const testModule = "example.com/m@v1.0.0"

var loopback4 = netip.MustParseAddr("127.0.0.1")

// moduleHandler serves a one-module GOPROXY (example.com/m v1.0.0: list,
// info, mod, zip) and 404 for everything else.
func moduleHandler(t *testing.T) http.Handler {
	dir := t.TempDir()
	testenv.WriteProxyDir(t, dir, []testenv.Module{{Path: "example.com/m", Version: "v1.0.0"}})
	return http.FileServer(http.Dir(dir))
}

// rootPEMs remembers the root of the CA behind each Target.Roots pool, for
// the recorder that points the real go command at the same fault.
var rootPEMs sync.Map // *x509.CertPool → []byte

type upstreamSpec struct {
	serverLeaf *testenv.Leaf
	clientAuth tls.ClientAuthType
	clientCAs  *x509.CertPool
	handler    http.Handler
}

// startUpstream starts a TLS upstream on 127.0.0.1 and returns its port.
func startUpstream(t *testing.T, s upstreamSpec) string {
	t.Helper()
	h := s.handler
	if h == nil {
		h = moduleHandler(t)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{s.serverLeaf.TLS}, ClientAuth: s.clientAuth, ClientCAs: s.clientCAs}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

func serverLeaf(t *testing.T, ca *testenv.CA, mod func(*testenv.CertSpec)) *testenv.Leaf {
	spec := testenv.CertSpec{Server: true, DNSNames: []string{"proxy.test", "localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
	if mod != nil {
		mod(&spec)
	}
	return ca.Issue(t, spec)
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	return port
}

// blackholePort returns a loopback port whose listener's accept queue is
// full, so that a new connect never completes: Linux drops the SYN.
func blackholePort(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(sa.(*syscall.SockaddrInet4).Port)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 200*time.Millisecond)
		if err != nil {
			// Confirm with a longer wait, so that a slow machine does
			// not pass for a full queue.
			if c, err = net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err != nil {
				break
			}
		}
		t.Cleanup(func() { c.Close() })
		if i > 16 {
			t.Fatal("the accept queue never filled up")
		}
	}
	return port
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

type faultCase struct {
	name       string
	setup      func(t *testing.T) ([]Target, Options)
	wantLayer  string
	wantStatus Status
	wantRemedy string // substring of the verdict's remedy
	wantDetail string // substring of the verdict's summary
}

func baseOptions(dns *testDNS) Options {
	o := Options{Env: envMap(nil), Step: time.Second, Total: 8 * time.Second}
	if dns != nil {
		o.Resolver = dns.resolver()
	}
	return o
}

func target(rawURL string, ca *testenv.CA, client *testenv.Leaf) Target {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(err)
	}
	t := Target{URL: u, Module: testModule}
	if ca != nil {
		t.Roots = ca.Pool()
		rootPEMs.Store(t.Roots, ca.RootPEM)
	}
	if client != nil {
		t.ClientLeaf = client.Cert
		t.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &client.TLS, nil }
	}
	return t
}

// relaxClientAuth makes tlsCase servers accept connections without a
// client certificate: the go-command recorder sets it for the faults that
// are not about the client certificate, since go cannot present one.
var relaxClientAuth bool

// tlsCase is the common shape: a TLS upstream on proxy.test (A record
// only), the server leaf and client identity modified by the case.
func tlsCase(mod func(*testenv.CertSpec), trustOther bool, auth tls.ClientAuthType, client func(t *testing.T, ca *testenv.CA) *testenv.Leaf, h func(*testing.T) http.Handler) func(t *testing.T) ([]Target, Options) {
	return tlsCaseDNS(map[string][]netip.Addr{"proxy.test": {loopback4}}, mod, trustOther, auth, client, h)
}

// tlsCaseDNS is tlsCase with the test DNS server's records given.
func tlsCaseDNS(records map[string][]netip.Addr, mod func(*testenv.CertSpec), trustOther bool, auth tls.ClientAuthType, client func(t *testing.T, ca *testenv.CA) *testenv.Leaf, h func(*testing.T) http.Handler) func(t *testing.T) ([]Target, Options) {
	return func(t *testing.T) ([]Target, Options) {
		var handler http.Handler
		if h != nil {
			handler = h(t)
		}
		ca := testenv.NewCA(t)
		if relaxClientAuth {
			auth = tls.VerifyClientCertIfGiven
		}
		port := startUpstream(t, upstreamSpec{serverLeaf: serverLeaf(t, ca, mod), clientAuth: auth, clientCAs: ca.Pool(), handler: handler})
		dns := startDNS(t, false, records)
		roots := ca
		if trustOther {
			roots = testenv.NewCA(t)
		}
		var leaf *testenv.Leaf
		if client != nil {
			leaf = client(t, ca)
		}
		return []Target{target("https://proxy.test:"+port+"/", roots, leaf)}, baseOptions(dns)
	}
}

// static adapts a handler that needs no test state.
func static(h http.Handler) func(*testing.T) http.Handler {
	return func(*testing.T) http.Handler { return h }
}

func goodClient(t *testing.T, ca *testenv.CA) *testenv.Leaf {
	return ca.Issue(t, testenv.CertSpec{Client: true, CommonName: "ci-job"})
}

func faultCases() []faultCase {
	past := func(s *testenv.CertSpec) {
		s.NotBefore = time.Now().Add(-3 * time.Hour)
		s.NotAfter = time.Now().Add(-time.Hour)
	}
	return []faultCase{
		{
			name:       "healthy mTLS upstream",
			setup:      tlsCase(nil, false, tls.RequireAndVerifyClientCert, goodClient, nil),
			wantStatus: StatusOK,
		},
		{
			name: "DNS name does not exist",
			setup: func(t *testing.T) ([]Target, Options) {
				dns := startDNS(t, false, nil)
				return []Target{target("https://nope.test/", nil, nil)}, baseOptions(dns)
			},
			wantLayer: LayerDNS, wantStatus: StatusFail, wantRemedy: "typo", wantDetail: "NXDOMAIN",
		},
		{
			name: "DNS server never answers",
			setup: func(t *testing.T) ([]Target, Options) {
				dns := startDNS(t, true, nil)
				return []Target{target("https://proxy.test/", nil, nil)}, baseOptions(dns)
			},
			wantLayer: LayerDNS, wantStatus: StatusFail, wantRemedy: "does not answer", wantDetail: "timeout",
		},
		{
			name: "TCP refused",
			setup: func(t *testing.T) ([]Target, Options) {
				return []Target{target("https://127.0.0.1:"+closedPort(t)+"/", nil, nil)}, baseOptions(nil)
			},
			wantLayer: LayerTCP, wantStatus: StatusFail, wantRemedy: "nothing listens", wantDetail: "refused",
		},
		{
			name: "TCP connect never completes",
			setup: func(t *testing.T) ([]Target, Options) {
				return []Target{target("https://127.0.0.1:"+blackholePort(t)+"/", nil, nil)}, baseOptions(nil)
			},
			wantLayer: LayerTCP, wantStatus: StatusFail, wantRemedy: "firewall", wantDetail: "timeout",
		},
		{
			name:      "server certificate expired",
			setup:     tlsCase(past, false, tls.RequireAndVerifyClientCert, goodClient, nil),
			wantLayer: LayerTLS, wantStatus: StatusFail, wantRemedy: "renew it on the server", wantDetail: "expired",
		},
		{
			name:      "server certificate for another name",
			setup:     tlsCase(func(s *testenv.CertSpec) { s.DNSNames, s.IPs = []string{"other.test"}, nil }, false, tls.RequireAndVerifyClientCert, goodClient, nil),
			wantLayer: LayerTLS, wantStatus: StatusFail, wantRemedy: "subject alternative names", wantDetail: "other.test",
		},
		{
			name:      "server certificate from an unknown CA",
			setup:     tlsCase(nil, true, tls.RequireAndVerifyClientCert, goodClient, nil),
			wantLayer: LayerTLS, wantStatus: StatusFail, wantRemedy: "--ca-cert", wantDetail: "unknown authority",
		},
		{
			name:      "server certificate without its intermediate",
			setup:     tlsCase(func(s *testenv.CertSpec) { s.SkipIntermediate = true }, false, tls.RequireAndVerifyClientCert, goodClient, nil),
			wantLayer: LayerTLS, wantStatus: StatusFail, wantRemedy: "full chain", wantDetail: "intermediate",
		},
		{
			name:      "client certificate not sent",
			setup:     tlsCase(nil, false, tls.RequireAndVerifyClientCert, nil, nil),
			wantLayer: LayerClientCert, wantStatus: StatusFail, wantRemedy: "--client-cert", wantDetail: "none was sent",
		},
		{
			name: "client certificate from another CA",
			setup: tlsCase(nil, false, tls.RequireAndVerifyClientCert, func(t *testing.T, _ *testenv.CA) *testenv.Leaf {
				return goodClient(t, testenv.NewCA(t))
			}, nil),
			wantLayer: LayerClientCert, wantStatus: StatusFail, wantRemedy: "issued by a CA the server accepts", wantDetail: "unknown certificate authority",
		},
		{
			name: "client certificate expired",
			setup: tlsCase(nil, false, tls.RequireAndVerifyClientCert, func(t *testing.T, ca *testenv.CA) *testenv.Leaf {
				return ca.Issue(t, testenv.CertSpec{Client: true, CommonName: "ci-job", NotBefore: time.Now().Add(-3 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
			}, nil),
			wantLayer: LayerClientCert, wantStatus: StatusFail, wantRemedy: "renew", wantDetail: "expired",
		},
		{
			name: "upstream answers 500",
			setup: tlsCase(nil, false, tls.RequireAndVerifyClientCert, goodClient, static(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "boom", http.StatusInternalServerError)
			}))),
			wantLayer: LayerHTTP, wantStatus: StatusFail, wantRemedy: "server error", wantDetail: "500",
		},
		{
			name: "upstream stalls mid-body",
			setup: tlsCase(nil, false, tls.RequireAndVerifyClientCert, goodClient, static(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "100000")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte("v1.0.0\nv1.0.1\n"))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}))),
			wantLayer: LayerHTTP, wantStatus: StatusFail, wantRemedy: "mid-response", wantDetail: "stopped after 14 bytes",
		},
		{
			name: "404 is module not found, not a failure",
			setup: tlsCase(nil, false, tls.RequireAndVerifyClientCert, goodClient, static(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.NotFound(w, r)
			}))),
			wantLayer: LayerHTTP, wantStatus: StatusWarn, wantRemedy: "module path", wantDetail: "module not found",
		},
		{
			name: "410 is module not found, not a failure",
			setup: tlsCase(nil, false, tls.RequireAndVerifyClientCert, goodClient, static(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "gone", http.StatusGone)
			}))),
			wantLayer: LayerHTTP, wantStatus: StatusWarn, wantRemedy: "module path", wantDetail: "410",
		},
		{
			// nginx's own code for "no certificate" when not remapped to
			// 400: the client-cert layer, as for its 400 page.
			name: "front answers 496 without a client certificate",
			setup: tlsCase(nil, false, tls.RequestClientCert, nil, static(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(496)
			}))),
			wantLayer: LayerClientCert, wantStatus: StatusFail, wantRemedy: "--client-cert", wantDetail: "496",
		},
		{
			name: "HTTPS_PROXY at a dead port",
			setup: func(t *testing.T) ([]Target, Options) {
				ts, o := tlsCase(nil, false, tls.RequireAndVerifyClientCert, goodClient, nil)(t)
				o.Env = envMap(map[string]string{"HTTPS_PROXY": "http://127.0.0.1:" + closedPort(t)})
				return ts, o
			},
			wantLayer: LayerProxy, wantStatus: StatusFail, wantRemedy: "NO_PROXY", wantDetail: "refused",
		},
		{
			name: "server Date two hours off",
			setup: tlsCase(nil, false, tls.RequireAndVerifyClientCert, goodClient, func(t *testing.T) http.Handler {
				next := moduleHandler(t)
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Date", time.Now().Add(2*time.Hour).UTC().Format(http.TimeFormat))
					next.ServeHTTP(w, r)
				})
			}),
			wantLayer: LayerClock, wantStatus: StatusFail, wantRemedy: "NTP", wantDetail: "+2h0m",
		},
		{
			name: "IPv6 address fails while IPv4 works",
			setup: tlsCaseDNS(map[string][]netip.Addr{"proxy.test": {loopback4, netip.IPv6Loopback()}},
				nil, false, tls.RequireAndVerifyClientCert, goodClient, nil),
			wantLayer: LayerTCP, wantStatus: StatusWarn, wantRemedy: "IPv6", wantDetail: "[::1]",
		},
	}
}

func TestFaultMatrix(t *testing.T) {
	t.Parallel()
	for _, tc := range faultCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			targets, opts := tc.setup(t)
			r := Run(context.Background(), targets, opts)
			var text strings.Builder
			_ = WriteText(&text, r, false)
			v := r.Verdict
			if v.Layer != tc.wantLayer || v.Status != tc.wantStatus {
				t.Fatalf("verdict = %s at %q, want %s at %q\n%s", v.Status, v.Layer, tc.wantStatus, tc.wantLayer, text.String())
			}
			if !strings.Contains(v.Remedy, tc.wantRemedy) {
				t.Errorf("verdict remedy = %q, want it to mention %q", v.Remedy, tc.wantRemedy)
			}
			if !strings.Contains(v.Summary, tc.wantDetail) {
				t.Errorf("verdict summary = %q, want it to mention %q", v.Summary, tc.wantDetail)
			}
			if got, want := r.Failed(), tc.wantStatus == StatusFail; got != want {
				t.Errorf("Failed() = %v, want %v", got, want)
			}
			if tc.wantStatus == StatusFail {
				b := r.Brief(8)
				if n := strings.Count(b, "\n"); n > 8 {
					t.Errorf("Brief has %d lines, want at most 8:\n%s", n, b)
				}
				if first, _, _ := strings.Cut(b, "\n"); !strings.Contains(first, tc.wantLayer) || !strings.Contains(first, r.Targets[0]) {
					t.Errorf("Brief's first line = %q, want the upstream %s and the layer %s", first, r.Targets[0], tc.wantLayer)
				}
			}
			assertSkipsAfterFail(t, r)
			t.Logf("\n%s", text.String())
		})
	}
}

// assertSkipsAfterFail checks that every check after a failure on the same
// address is a skip.
func assertSkipsAfterFail(t *testing.T, r *Report) {
	t.Helper()
	failed := map[string]bool{}
	for _, c := range r.Checks {
		key := c.Target + " " + c.Address
		if c.Layer == LayerEnv || c.Layer == LayerSumDB {
			continue
		}
		if failed[key] && c.Status != StatusSkip {
			t.Errorf("check %s %s after a failure is %s, want skip", c.Layer, key, c.Status)
		}
		// A wrong clock does not stop the HTTP check.
		if c.Status == StatusFail && c.Layer != LayerClock {
			failed[key] = true
		}
	}
}

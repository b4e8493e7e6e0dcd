package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// testToken is the capability token of the test agents.
const testToken = "T0kenT0kenT0kenT0ken12"

// modServer serves a GOPROXY directory, counting requests by path; hook,
// when set, may take over a request (return true).
type modServer struct {
	root fs.FS
	mu   sync.Mutex
	hits map[string]int
	all  atomic.Int64
	hook atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
}

func newModServer(t testing.TB, mods []testenv.Module) *modServer {
	t.Helper()
	dir := t.TempDir()
	testenv.WriteProxyDir(t, dir, mods)
	return &modServer{root: os.DirFS(dir), hits: map[string]int{}}
}

func (s *modServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.all.Add(1)
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	s.mu.Lock()
	s.hits[name]++
	s.mu.Unlock()
	if h := s.hook.Load(); h != nil && (*h)(w, r) {
		return
	}
	data, err := fs.ReadFile(s.root, name)
	if err != nil || name == "" || name == "." {
		http.Error(w, "not found: "+name, http.StatusNotFound)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

func (s *modServer) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[name]
}

func (s *modServer) setHook(f func(w http.ResponseWriter, r *http.Request) bool) {
	if f == nil {
		s.hook.Store(nil)
		return
	}
	s.hook.Store(&f)
}

// mtls is a per-test CA with a client identity for the agent.
type mtls struct {
	ca     *testenv.CA
	client *testenv.Leaf
	id     *tlsauth.Identity
}

func newMTLS(t testing.TB) *mtls {
	t.Helper()
	ca := testenv.NewCA(t)
	client := ca.Issue(t, testenv.CertSpec{CommonName: "agent", Client: true})
	id, err := tlsauth.LoadPEM(client.CertPEM, client.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &mtls{ca: ca, client: client, id: id}
}

// serve starts h as an HTTPS server on 127.0.0.1 that requires a client
// certificate from m's CA (HTTP/2 enabled, like the real upstreams).
func (m *mtls) serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	return m.serveProto(t, h, true)
}

// serveProto is serve with HTTP/2 offered or not (HTTP/1.1 only).
func (m *mtls) serveProto(t testing.TB, h http.Handler, h2 bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = h2
	leaf := m.ca.Issue(t, testenv.CertSpec{Server: true})
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{leaf.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    m.ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are the tests' business
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// clientOpts are the knobs of a test upstream client.
type clientOpts struct {
	timeouts upstream.Timeouts
	retry    upstream.Retry
	breaker  upstream.Breaker
	log      hclog.Logger
}

// newClient returns an upstream client for list, presenting m's identity
// to every origin in it.
func (m *mtls) newClient(t testing.TB, list string, o clientOpts) *upstream.Client {
	t.Helper()
	entries, err := upstream.ParseList(list)
	if err != nil {
		t.Fatal(err)
	}
	var origins []upstream.Origin
	for _, e := range upstream.Proxies(entries) {
		origins = append(origins, upstream.Origin{Host: e.URL.Host, Identity: m.id, Roots: m.ca.Pool()})
	}
	if o.timeouts == (upstream.Timeouts{}) {
		o.timeouts = upstream.DefaultTimeouts(10 * time.Second)
	}
	if o.retry.Attempts == 0 {
		o.retry = upstream.Retry{Attempts: 3, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	}
	c := upstream.New(upstream.Options{
		Entries:   entries,
		Transport: upstream.NewTransport(upstream.TransportOptions{Origins: origins, Timeouts: o.timeouts, Retry: o.retry, Logger: o.log}),
		Breaker:   o.breaker,
		Logger:    o.log,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// newAgent serves a forwarder over up on 127.0.0.1 and returns its base
// URL (with the capability token) and the handler.
func newAgent(t testing.TB, up Fetcher, log hclog.Logger) (string, *Handler) {
	t.Helper()
	h, err := New(Config{Token: testToken, Upstream: up, Classify: testClassify, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/" + testToken, h
}

// fetch GETs u and returns status and body; a body that fails to read is
// an error.
func fetch(t testing.TB, c *http.Client, u string) (int, []byte, error) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// recorder is a Fetcher that records every path it is asked for and
// answers 404.
type recorder struct {
	mu    sync.Mutex
	paths []string
}

func (r *recorder) Get(_ context.Context, p string) (*http.Response, error) {
	r.mu.Lock()
	r.paths = append(r.paths, p)
	r.mu.Unlock()
	return nil, &upstream.Error{Upstream: "http://127.0.0.1:1", URL: "http://127.0.0.1:1/" + p, StatusCode: http.StatusNotFound, Body: "not found"}
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.paths...)
}

// testModules returns n small modules plus one with a zip of about
// bigZip bytes of incompressible content (0: none).
func testModules(n, bigZip int) []testenv.Module {
	var mods []testenv.Module
	for i := range n {
		mods = append(mods, testenv.Module{Path: "example.test/m" + string(rune('a'+i)), Version: "v1.0.0"})
	}
	if bigZip > 0 {
		mods = append(mods, testenv.Module{Path: "example.test/big", Version: "v1.0.0", Files: map[string]string{
			"big.go":   "package big\n\n// Name names the package.\nfunc Name() string { return \"big\" }\n",
			"data.bin": randomText(bigZip),
		}})
	}
	return mods
}

// randomText returns n bytes that do not compress.
func randomText(n int) string { return string(testenv.Noise(n)) }

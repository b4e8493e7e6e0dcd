package proxy

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// rawRequest sends one raw HTTP/1.1 request to addr and returns the
// status code.
func rawRequest(t *testing.T, addr, requestLine string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "%s\r\nHost: %s\r\nConnection: close\r\n\r\n", requestLine, addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: %v", requestLine, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestCapabilityTokenRequired(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	h, err := New(Config{Token: testToken, Upstream: rec})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	const p = "/x.test/m/@v/list"
	cases := []struct {
		name, line string
		want       int
	}{
		{"no token", "GET " + p + " HTTP/1.1", 404},
		{"wrong token", "GET /AAAAAAAAAAAAAAAAAAAAAA" + p + " HTTP/1.1", 404},
		{"token prefix", "GET /" + testToken[:len(testToken)-1] + p + " HTTP/1.1", 404},
		{"token plus", "GET /" + testToken + "x" + p + " HTTP/1.1", 404},
		{"token case", "GET /" + strings.ToUpper(testToken) + p + " HTTP/1.1", 404},
		{"token in query", "GET " + p + "?token=" + testToken + " HTTP/1.1", 404},
		{"token after path", "GET " + p + "/" + testToken + " HTTP/1.1", 404},
		{"root", "GET / HTTP/1.1", 404},
		{"admin without token", "GET /.goproxy-setup/stats HTTP/1.1", 404},
		{"absolute URL", "GET http://" + addr + "/" + testToken + p + " HTTP/1.1", 400},
		{"CONNECT", "CONNECT 127.0.0.1:443 HTTP/1.1", 400},
		{"traversal to token", "GET /x/../" + testToken + p + " HTTP/1.1", 404},
		{"malformed with token", "GET /" + testToken + "/x.test/../m/@v/list HTTP/1.1", 400},
		{"encoded slash with token", "GET /" + testToken + "/x.test%2fm/@v/list HTTP/1.1", 400},
	}
	for _, tc := range cases {
		if got := rawRequest(t, addr, tc.line); got != tc.want {
			t.Errorf("%s (%s): got %d, want %d", tc.name, tc.line, got, tc.want)
		}
	}
	if got := rec.got(); len(got) != 0 {
		t.Errorf("forwarded %q, want nothing", got)
	}
	// The control: the right token is forwarded.
	if got := rawRequest(t, addr, "GET /"+testToken+p+" HTTP/1.1"); got != 404 || len(rec.got()) != 1 {
		t.Errorf("with the token: status %d, forwarded %q; want the upstream's 404 and one forward", got, rec.got())
	}
}

// certRecorder is a TLS server that accepts any client certificate and
// records whether one was presented.
type certRecorder struct {
	*httptest.Server
	withCert, without atomic.Int64
}

func TestClientCertNotSentAfterRedirect(t *testing.T) {
	t.Parallel()
	m := newMTLS(t)
	// B: another host name ("localhost" vs "127.0.0.1"), any client cert.
	b := &certRecorder{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			b.withCert.Add(1)
		} else {
			b.without.Add(1)
		}
		io.WriteString(w, "v1.0.0\n")
	}))
	b.TLS = &tls.Config{
		Certificates: []tls.Certificate{m.ca.Issue(t, testenv.CertSpec{Server: true, DNSNames: []string{"localhost"}}).TLS},
		ClientAuth:   tls.RequestClientCert,
	}
	b.StartTLS()
	t.Cleanup(b.Close)
	bURL := strings.Replace(b.URL, "127.0.0.1", "localhost", 1)
	// A: the origin, requires the client certificate, redirects to B.
	var aCerts atomic.Int64
	a := m.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			aCerts.Add(1)
		}
		http.Redirect(w, r, bURL+r.URL.Path, http.StatusFound)
	}))

	base, _ := newAgent(t, m.newClient(t, a.URL, clientOpts{}), nil)
	code, body, err := fetch(t, http.DefaultClient, base+"/x.test/m/@v/list")
	if err != nil || code != 200 || string(body) != "v1.0.0\n" {
		t.Fatalf("through the redirect: %d %q %v, want 200 from the redirect target", code, body, err)
	}
	if aCerts.Load() != 1 {
		t.Errorf("origin saw %d client certificates, want 1", aCerts.Load())
	}
	if b.withCert.Load() != 0 || b.without.Load() != 1 {
		t.Errorf("redirect target: %d requests with a client certificate, %d without; want 0 and 1", b.withCert.Load(), b.without.Load())
	}

	// Control: when B is an origin of its own (listed), it gets the
	// certificate — so the recorder above can see one.
	base2, _ := newAgent(t, m.newClient(t, a.URL+"|"+bURL, clientOpts{}), nil)
	if code, _, err := fetch(t, http.DefaultClient, base2+"/x.test/m/@v/list"); err != nil || code != 200 {
		t.Fatalf("control: %d %v", code, err)
	}
	if b.withCert.Load() != 1 {
		t.Errorf("control: redirect target listed as an origin saw %d client certificates, want 1", b.withCert.Load())
	}
}

func TestOldTLSRefused(t *testing.T) {
	t.Parallel()
	m := newMTLS(t)
	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS 1.0", tls.VersionTLS10}, {"TLS 1.1", tls.VersionTLS11}} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			var hits atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				io.WriteString(w, "v1.0.0\n")
			}))
			srv.TLS = &tls.Config{
				Certificates: []tls.Certificate{m.ca.Issue(t, testenv.CertSpec{Server: true}).TLS},
				MinVersion:   tls.VersionTLS10,
				MaxVersion:   v.max,
			}
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			srv.StartTLS()
			t.Cleanup(srv.Close)
			base, h := newAgent(t, m.newClient(t, srv.URL, clientOpts{retry: upstream.Retry{Attempts: 1}}), nil)
			code, body, _ := fetch(t, http.DefaultClient, base+"/x.test/m/@v/list")
			if code != http.StatusBadGateway {
				t.Fatalf("upstream offering only %s: got %d %q, want 502", v.name, code, body)
			}
			if !strings.Contains(string(body), "tls") || !strings.Contains(string(body), "protocol version") {
				t.Errorf("502 body %q does not name the TLS layer and the protocol version", body)
			}
			if hits.Load() != 0 {
				t.Errorf("upstream served %d requests over %s", hits.Load(), v.name)
			}
			if st := h.Stats(); st.ErrorsByLayer["tls"] != 1 {
				t.Errorf("stats errors by layer %v, want tls: 1", st.ErrorsByLayer)
			}
		})
	}
}

func TestCanarySecretsNeverShown(t *testing.T) {
	t.Parallel()
	const canary = "Zx81CANARYs3cretAbCdEf99"
	m := newMTLS(t)
	token := "tok" + canary
	logs := &testenv.SyncBuffer{}
	for _, format := range []bool{false, true} {
		log := hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: logs, JSONFormat: format})
		// A dead upstream (refused), one whose base path holds a token,
		// user info with the canary, and a live one that fails with 500.
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		live := m.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}))
		list := strings.Replace(dead.URL, "http://", "http://user:"+canary+"@", 1) + "/" + canary + "|" +
			strings.Replace(live.URL, "https://", "https://user:"+canary+"@", 1) + "/" + canary
		c := m.newClient(t, list, clientOpts{log: log, retry: upstream.Retry{Attempts: 2, Backoff: time.Millisecond}, breaker: upstream.Breaker{Failures: 1, Cooldown: time.Hour}})
		h, err := New(Config{Token: token, Upstream: c, Classify: testClassify, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		var shown []string
		for _, p := range []string{
			"/" + token + "/x.test/m/@v/list",
			"/" + token + "/x.test/m/@v/v1.0.0.mod",
			"/" + token + "/x.test/m/@v/v1.0.0.mod", // circuit open now
			"/" + canary + "/x.test/m/@v/list",      // wrong token holding the canary
		} {
			_, body, _ := fetch(t, http.DefaultClient, srv.URL+p)
			shown = append(shown, string(body))
		}
		_, err = c.Get(t.Context(), "x.test/m/@v/list")
		shown = append(shown, fmt.Sprint(err))
		st, _ := json.Marshal(h.Stats())
		shown = append(shown, string(st))
		hl, _ := json.Marshal(c.Health())
		shown = append(shown, string(hl))
		for _, e := range c.Entries() {
			shown = append(shown, e.String())
		}
		_, sbody, _ := fetch(t, http.DefaultClient, srv.URL+"/"+token+"/"+wire.AdminPrefix+"stats")
		shown = append(shown, string(sbody))
		for i, s := range shown {
			if strings.Contains(s, canary) {
				t.Errorf("output %d shows the canary: %s", i, s)
			}
		}
	}
	out := logs.String()
	if !strings.Contains(out, "upstream failed") {
		t.Fatalf("no failure logged; log:\n%s", out)
	}
	if strings.Contains(out, canary) {
		t.Errorf("log shows the canary:\n%s", out)
	}
	// The key never appears either.
	keyBody := strings.Split(string(m.client.KeyPEM), "\n")[1]
	if strings.Contains(out, keyBody) {
		t.Errorf("log shows the client key")
	}
}

package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"
)

// TestMTLSStack proves the nginx example: with the client certificate the
// modules come through nginx and the real goproxy; without one, or with
// one from another CA, nginx answers 400.
func TestMTLSStack(t *testing.T) {
	t.Parallel()
	mods := []Module{
		{Path: "example.test/stack", Version: "v1.2.3"},
		{Path: "example.test/Stack/Upper", Version: "v0.1.0"},
	}
	s := StartMTLSStack(t, mods)
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") || !strings.HasPrefix(s.Origin, "http://127.0.0.1:") {
		t.Fatalf("URL = %q, Origin = %q, want loopback https and http", s.URL, s.Origin)
	}

	// The client from the files the stack wrote, as a real client would.
	pair, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	good := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: poolFromFile(t, s.CAFile), Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
	}, ForceAttemptHTTP2: true}}
	zipPath := filepath.Join(t.TempDir(), "m.zip")
	for _, test := range []struct {
		path, want string
	}{
		{"/example.test/stack/@v/list", "v1.2.3"},
		{"/example.test/stack/@v/v1.2.3.info", `"Version":"v1.2.3"`},
		{"/example.test/stack/@v/v1.2.3.mod", "module example.test/stack\n"},
		{"/example.test/!stack/!upper/@v/v0.1.0.mod", "module example.test/Stack/Upper\n"},
		{"/example.test/stack/@v/v1.2.3.zip", ""},
	} {
		resp, err := good.Get(s.URL + test.path)
		if err != nil {
			t.Fatalf("GET %s with the client certificate: %v", test.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d %q, want 200", test.path, resp.StatusCode, body)
			continue
		}
		if resp.ProtoMajor != 2 {
			t.Errorf("GET %s over %s, want HTTP/2", test.path, resp.Proto)
		}
		if !strings.Contains(string(body), test.want) {
			t.Errorf("GET %s = %q, want it to contain %q", test.path, body, test.want)
		}
		if strings.HasSuffix(test.path, ".zip") {
			if err := os.WriteFile(zipPath, body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	h, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	if want := "example.test/stack v1.2.3 " + h + "\n"; !strings.Contains(string(s.GoSum), want) {
		t.Errorf("zip served over mTLS hashes to %s; go.sum lacks %q:\n%s", h, want, s.GoSum)
	}

	other := NewCA(t)
	for _, test := range []struct {
		name     string
		certs    []tls.Certificate
		wantBody string
	}{
		{"no client certificate", nil, "No required SSL certificate was sent"},
		{"certificate from another CA", []tls.Certificate{other.Issue(t, CertSpec{Client: true}).TLS}, "The SSL certificate error"},
		{"client certificate without intermediate", []tls.Certificate{s.ClientCA.Issue(t, CertSpec{Client: true, SkipIntermediate: true}).TLS}, "The SSL certificate error"},
	} {
		t.Run(test.name, func(t *testing.T) {
			// GetClientCertificate, not Certificates: crypto/tls would
			// otherwise send nothing when the chain does not match the
			// CAs nginx names in its CertificateRequest.
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
				RootCAs: s.CA.Pool(), MinVersion: tls.VersionTLS12,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if len(test.certs) == 0 {
						return &tls.Certificate{}, nil
					}
					return &test.certs[0], nil
				},
			}}}
			resp, err := c.Get(s.URL + "/example.test/stack/@v/list")
			if err != nil {
				t.Fatalf("GET: %v, want nginx's 400 answer", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), test.wantBody) {
				t.Errorf("GET = %d %q, want 400 with %q", resp.StatusCode, body, test.wantBody)
			}
		})
	}

	// The real go command builds the modules from the real goproxy behind
	// nginx (cmd/go cannot present a client certificate, so it talks to
	// the origin), and verifies the cache offline.
	work := t.TempDir()
	WriteConsumer(t, work, mods)
	env := append(GoEnv(t, t.TempDir()), "GOPROXY="+s.Origin)
	if out, err := RunGo(t, work, env, "build", "./..."); err != nil {
		t.Fatalf("go build ./... with GOPROXY=%s: %v\n%s", s.Origin, err, out)
	}
	if out, err := RunGo(t, work, append(env, "GOPROXY=off"), "mod", "verify"); err != nil || !strings.Contains(out, "all modules verified") {
		t.Fatalf("GOPROXY=off go mod verify: %v\n%s", err, out)
	}

	// The origin serves without any certificate: it is the plain upstream.
	resp, err := http.Get(s.Origin + "/example.test/stack/@v/list")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("origin GET @v/list = %d, want 200", resp.StatusCode)
	}
}

// TestMTLSStackOptions checks a separate client CA and a custom server leaf.
func TestMTLSStackOptions(t *testing.T) {
	t.Parallel()
	clientCA := NewCA(t)
	s := StartMTLSStack(t, []Module{{Path: "example.test/opt", Version: "v1.0.0"}},
		WithClientCA(clientCA),
		WithServerSpec(CertSpec{CommonName: "proxy.test", DNSNames: []string{"proxy.test"}}))
	if s.ClientCA != clientCA || s.CA == clientCA {
		t.Fatalf("ClientCA not the one given")
	}
	if err := s.Client.Cert.CheckSignatureFrom(clientCA.Intermediate); err != nil {
		t.Errorf("Stack.Client not issued by the client CA: %v", err)
	}
	// The server leaf names proxy.test only: verifying 127.0.0.1 must fail
	// with a hostname error, and with ServerName proxy.test succeed.
	_, err := s.HTTPClient().Get(s.URL + "/example.test/opt/@v/list")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("GET with a proxy.test-only server cert: %v, want a hostname mismatch for 127.0.0.1", err)
	}
	c := s.HTTPClient()
	c.Transport.(*http.Transport).TLSClientConfig.ServerName = "proxy.test"
	resp, err := c.Get(s.URL + "/example.test/opt/@v/list")
	if err != nil {
		t.Fatalf("GET with ServerName proxy.test: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET = %d, want 200", resp.StatusCode)
	}
	// A client cert from the server's CA is not accepted any more.
	c = s.HTTPClient()
	wrong := s.CA.Issue(t, CertSpec{Client: true}).TLS
	cfg := c.Transport.(*http.Transport).TLSClientConfig
	cfg.ServerName = "proxy.test"
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &wrong, nil }
	resp, err = c.Get(s.URL + "/example.test/opt/@v/list")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "The SSL certificate error") {
		t.Errorf("GET with a client cert from the server CA = %d %q, want 400 The SSL certificate error", resp.StatusCode, body)
	}
	s.Stop()
	if _, err := s.HTTPClient().Get(s.URL + "/"); err == nil {
		t.Errorf("GET after Stop succeeded, want a connection error")
	}
}

func TestRenderNginxConf(t *testing.T) {
	t.Parallel()
	got, err := RenderNginxConf("listen ${LISTEN}; proxy_set_header Host $host; x ${UPSTREAM}$request_uri;", map[string]string{"LISTEN": "127.0.0.1:1", "UPSTREAM": "http://u"})
	if want := "listen 127.0.0.1:1; proxy_set_header Host $host; x http://u$request_uri;"; err != nil || got != want {
		t.Errorf("RenderNginxConf = %q, %v, want %q", got, err, want)
	}
	if _, err := RenderNginxConf("${LISTEN} ${PREFIX}", map[string]string{"LISTEN": "x"}); err == nil || !strings.Contains(err.Error(), "PREFIX") {
		t.Errorf("RenderNginxConf with a missing value: %v, want an error naming PREFIX", err)
	}
}

func poolFromFile(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificates in %s", file)
	}
	return p
}

// TestMTLSStackIncompleteServerChain checks a stack whose nginx serves its
// leaf without the intermediate: it starts (readiness does not need a
// verifiable server), and a client fails with an unknown authority.
func TestMTLSStackIncompleteServerChain(t *testing.T) {
	t.Parallel()
	s := StartMTLSStack(t, []Module{{Path: "example.test/chain", Version: "v1.0.0"}},
		WithServerSpec(CertSpec{SkipIntermediate: true}))
	_, err := s.HTTPClient().Get(s.URL + "/example.test/chain/@v/list")
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Errorf("GET from a server without its intermediate: %v, want x509.UnknownAuthorityError", err)
	}
}

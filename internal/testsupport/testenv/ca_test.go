package testenv

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIssue(t *testing.T) {
	t.Parallel()
	ca := NewCA(t)
	now := time.Now()
	for _, test := range []struct {
		name       string
		spec       CertSpec
		wantKey    string // PEM block type
		wantCerts  int    // certificates in CertPEM
		wantDNS    []string
		wantIPs    int
		wantEKU    []x509.ExtKeyUsage
		wantVerify bool // verifies against Pool() now, with the chain from CertPEM
	}{
		{"server default", CertSpec{Server: true}, "PRIVATE KEY", 2, []string{"localhost"}, 2, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, true},
		{"client", CertSpec{Client: true, CommonName: "ci-job"}, "PRIVATE KEY", 2, nil, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, true},
		{"both", CertSpec{Server: true, Client: true, DNSNames: []string{"proxy.test"}}, "PRIVATE KEY", 2, []string{"proxy.test"}, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, true},
		{"rsa pkcs1", CertSpec{Client: true, KeyType: "rsa", KeyFormat: "pkcs1"}, "RSA PRIVATE KEY", 2, nil, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, true},
		{"ecdsa sec1", CertSpec{Client: true, KeyFormat: "sec1"}, "EC PRIVATE KEY", 2, nil, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, true},
		{"ed25519", CertSpec{Client: true, KeyType: "ed25519"}, "PRIVATE KEY", 2, nil, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, true},
		{"no intermediate", CertSpec{Server: true, SkipIntermediate: true}, "PRIVATE KEY", 1, []string{"localhost"}, 2, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, false},
		{"expired", CertSpec{Client: true, NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)}, "PRIVATE KEY", 2, nil, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false},
		{"not yet valid", CertSpec{Client: true, NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour)}, "PRIVATE KEY", 2, nil, 0, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			l := ca.Issue(t, test.spec)
			certs := decodeAll(t, l.CertPEM, "CERTIFICATE")
			if len(certs) != test.wantCerts {
				t.Fatalf("CertPEM has %d certificates, want %d", len(certs), test.wantCerts)
			}
			if !bytes.Equal(certs[0], l.Cert.Raw) {
				t.Errorf("first certificate in CertPEM is not Cert")
			}
			if len(certs) == 2 && !bytes.Equal(certs[1], ca.Intermediate.Raw) {
				t.Errorf("second certificate in CertPEM is not the intermediate")
			}
			if got := len(l.TLS.Certificate); got != test.wantCerts {
				t.Errorf("TLS chain length = %d, want %d", got, test.wantCerts)
			}
			b, _ := pem.Decode(l.KeyPEM)
			if b == nil || b.Type != test.wantKey {
				t.Fatalf("KeyPEM block = %v, want type %q", b, test.wantKey)
			}
			// The key files must load with the standard library, and the
			// key must match the certificate.
			if _, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM); err != nil {
				t.Errorf("tls.X509KeyPair: %v", err)
			}
			if got := l.Cert.DNSNames; strings.Join(got, ",") != strings.Join(test.wantDNS, ",") {
				t.Errorf("DNSNames = %v, want %v", got, test.wantDNS)
			}
			if got := len(l.Cert.IPAddresses); got != test.wantIPs {
				t.Errorf("len(IPAddresses) = %d, want %d", got, test.wantIPs)
			}
			if got := l.Cert.ExtKeyUsage; len(got) != len(test.wantEKU) {
				t.Errorf("ExtKeyUsage = %v, want %v", got, test.wantEKU)
			}
			if l.Cert.IsCA {
				t.Errorf("leaf IsCA = true, want false")
			}
			inter := x509.NewCertPool()
			for _, der := range certs[1:] {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				inter.AddCert(c)
			}
			_, err := l.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if got := err == nil; got != test.wantVerify {
				t.Errorf("Verify with the CertPEM chain: ok = %v (%v), want %v", got, err, test.wantVerify)
			}
		})
	}
}

func TestIssueKeyTypes(t *testing.T) {
	t.Parallel()
	ca := NewCA(t)
	for _, test := range []struct {
		keyType string
		check   func(any) bool
	}{
		{"", func(k any) bool { _, ok := k.(*ecdsa.PrivateKey); return ok }},
		{"ecdsa", func(k any) bool { _, ok := k.(*ecdsa.PrivateKey); return ok }},
		{"rsa", func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 2048 }},
		{"ed25519", func(k any) bool { _, ok := k.(ed25519.PrivateKey); return ok }},
	} {
		t.Run(test.keyType, func(t *testing.T) {
			t.Parallel()
			l := ca.Issue(t, CertSpec{Client: true, KeyType: test.keyType})
			b, _ := pem.Decode(l.KeyPEM)
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				t.Fatalf("ParsePKCS8PrivateKey: %v", err)
			}
			if !test.check(k) {
				t.Errorf("key type %T, want %q", k, test.keyType)
			}
		})
	}
}

func TestCAChain(t *testing.T) {
	t.Parallel()
	ca := NewCA(t)
	other := NewCA(t)
	if !ca.Root.IsCA || !ca.Intermediate.IsCA {
		t.Fatalf("root IsCA=%v intermediate IsCA=%v, want both true", ca.Root.IsCA, ca.Intermediate.IsCA)
	}
	if err := ca.Intermediate.CheckSignatureFrom(ca.Root); err != nil {
		t.Errorf("intermediate not signed by root: %v", err)
	}
	if ca.Root.Subject.CommonName == other.Root.Subject.CommonName {
		t.Errorf("two CAs share the root name %q, want distinct", ca.Root.Subject.CommonName)
	}
	leaf := other.Issue(t, CertSpec{Client: true})
	inter := x509.NewCertPool()
	inter.AddCert(other.Intermediate)
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Errorf("leaf of another CA verified against this CA's pool, want an error")
	}
	if got := decodeAll(t, ca.RootPEM, "CERTIFICATE"); len(got) != 1 || !bytes.Equal(got[0], ca.Root.Raw) {
		t.Errorf("RootPEM does not hold exactly the root")
	}
	if got := decodeAll(t, ca.IntermediatePEM, "CERTIFICATE"); len(got) != 1 || !bytes.Equal(got[0], ca.Intermediate.Raw) {
		t.Errorf("IntermediatePEM does not hold exactly the intermediate")
	}
}

func TestWriteFiles(t *testing.T) {
	t.Parallel()
	ca := NewCA(t)
	dir := t.TempDir()
	l := ca.Issue(t, CertSpec{Client: true, CommonName: "job/1"})
	certFile, keyFile := l.WriteFiles(t, dir)
	certFile2, keyFile2 := ca.Issue(t, CertSpec{Client: true, CommonName: "job/1"}).WriteFiles(t, dir)
	if certFile == certFile2 || keyFile == keyFile2 {
		t.Errorf("second leaf with the same name overwrote the first: %s, %s", certFile2, keyFile2)
	}
	rootFile := ca.WriteRoot(t, dir)
	intCert, intKey := ca.WriteIntermediate(t, dir)
	for _, f := range []struct {
		path string
		perm os.FileMode
		want []byte
	}{
		{certFile, 0o644, l.CertPEM},
		{keyFile, 0o600, l.KeyPEM},
		{rootFile, 0o644, ca.RootPEM},
		{intCert, 0o644, ca.IntermediatePEM},
		{intKey, 0o600, nil},
	} {
		if filepath.Dir(f.path) != dir {
			t.Errorf("%s not in %s", f.path, dir)
		}
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != f.perm {
			t.Errorf("%s mode = %v, want %v", f.path, got, f.perm)
		}
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if f.want != nil && !bytes.Equal(data, f.want) {
			t.Errorf("%s content differs from the PEM it was written from", f.path)
		}
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("tls.LoadX509KeyPair(%s, %s): %v", certFile, keyFile, err)
	}
	if _, err := tls.LoadX509KeyPair(intCert, intKey); err != nil {
		t.Errorf("tls.LoadX509KeyPair(%s, %s): %v", intCert, intKey, err)
	}
}

// TestMTLSHandshake proves the leaves work together in a real TLS 1.3
// handshake on loopback: server leaf and client leaf from one CA.
func TestMTLSHandshake(t *testing.T) {
	t.Parallel()
	ca := NewCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, CertSpec{Server: true}).TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	for _, test := range []struct {
		name   string
		client *Leaf
		wantOK bool
	}{
		{"client leaf", ca.Issue(t, CertSpec{Client: true, CommonName: "job"}), true},
		{"client leaf without intermediate", ca.Issue(t, CertSpec{Client: true, SkipIntermediate: true}), false},
		{"server-only leaf as client", ca.Issue(t, CertSpec{Server: true}), false},
		{"other CA", NewCA(t).Issue(t, CertSpec{Client: true}), false},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
				RootCAs:      ca.Pool(),
				Certificates: []tls.Certificate{test.client.TLS},
				MinVersion:   tls.VersionTLS12,
			}}}
			resp, err := c.Get(srv.URL)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if got := err == nil; got != test.wantOK {
				t.Errorf("GET over mTLS ok = %v (%v), want %v", got, err, test.wantOK)
			}
		})
	}
	// The server leaf names 127.0.0.1; the client must verify it.
	if host, _, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://")); host != "127.0.0.1" {
		t.Fatalf("httptest server on %s, want 127.0.0.1", host)
	}
}

func decodeAll(t *testing.T, data []byte, typ string) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != typ {
			t.Fatalf("PEM block type %q, want %q", b.Type, typ)
		}
		out = append(out, b.Bytes)
	}
	return out
}

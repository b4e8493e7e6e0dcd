package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a per-test throwaway certificate authority: a self-signed root that
// signs one intermediate, which signs every leaf. Nothing is written to disk
// unless a test asks for it.
type CA struct {
	// Root is the self-signed root certificate.
	Root *x509.Certificate
	// RootPEM is Root, PEM-encoded.
	RootPEM []byte
	// Intermediate is the intermediate CA certificate that signs the leaves.
	Intermediate *x509.Certificate
	// IntermediatePEM is Intermediate, PEM-encoded.
	IntermediatePEM []byte

	rootKey         crypto.Signer
	intermediateKey crypto.Signer
}

// CertSpec describes a leaf certificate to issue. The zero value is a valid
// spec: an ECDSA P-256 leaf valid from a minute ago for an hour, with no
// extended key usage.
type CertSpec struct {
	// CommonName is the subject common name; "localhost" for server leaves
	// and "test-client" otherwise when empty.
	CommonName string
	// DNSNames, IPs and URIs are the subject alternative names. A Server
	// leaf with none of them gets DNS name "localhost" and IPs 127.0.0.1
	// and ::1.
	DNSNames []string
	IPs      []net.IP
	URIs     []*url.URL
	// NotBefore and NotAfter bound the validity; zero means now-1m and
	// now+1h. Set both in the past for an expired leaf, both in the future
	// for a not-yet-valid one.
	NotBefore, NotAfter time.Time
	// Server and Client add the ServerAuth and ClientAuth extended key
	// usages.
	Server, Client bool
	// KeyType is "ecdsa" (P-256, the default), "rsa" (2048 bits) or
	// "ed25519".
	KeyType string
	// KeyFormat is the PEM encoding of KeyPEM: "pkcs8" (the default),
	// "pkcs1" (rsa only, "RSA PRIVATE KEY") or "sec1" (ecdsa only,
	// "EC PRIVATE KEY").
	KeyFormat string
	// SkipIntermediate leaves the intermediate out of CertPEM and TLS, to
	// model a peer that sends its leaf without the chain.
	SkipIntermediate bool
}

// Leaf is an issued end-entity certificate with its key.
type Leaf struct {
	// Cert is the parsed leaf certificate.
	Cert *x509.Certificate
	// CertPEM is the leaf followed by the intermediate (only the leaf with
	// SkipIntermediate).
	CertPEM []byte
	// KeyPEM is the private key in the spec's KeyFormat.
	KeyPEM []byte
	// Key is the private key.
	Key crypto.Signer
	// TLS is the certificate chain and key ready for tls.Config.
	TLS tls.Certificate
}

// NewCA returns a fresh root and intermediate CA. Their validity (two days
// back, thirty days ahead) encloses any leaf a test is likely to ask for.
func NewCA(t testing.TB) *CA {
	t.Helper()
	now := time.Now()
	suffix := randomHex(t, 4)
	rootKey := generateKey(t, "ecdsa")
	rootTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "goproxy-setup test root " + suffix, Organization: []string{"goproxy-setup tests"}},
		NotBefore:             now.Add(-48 * time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	root := createCert(t, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	intKey := generateKey(t, "ecdsa")
	intTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "goproxy-setup test intermediate " + suffix, Organization: []string{"goproxy-setup tests"}},
		NotBefore:             rootTmpl.NotBefore,
		NotAfter:              rootTmpl.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	intermediate := createCert(t, intTmpl, root, intKey.Public(), rootKey)
	return &CA{
		Root:            root,
		RootPEM:         certPEM(root),
		Intermediate:    intermediate,
		IntermediatePEM: certPEM(intermediate),
		rootKey:         rootKey,
		intermediateKey: intKey,
	}
}

// Pool returns a pool holding only the root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// RootKey returns the root's private key, for tests that sign something
// other than a leaf (for example a step-ca configuration).
func (ca *CA) RootKey() crypto.Signer { return ca.rootKey }

// IntermediateKey returns the intermediate's private key.
func (ca *CA) IntermediateKey() crypto.Signer { return ca.intermediateKey }

// WriteRoot writes the root certificate to dir/ca.crt (0644) and returns
// the path.
func (ca *CA) WriteRoot(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ca.crt")
	writeFile(t, p, ca.RootPEM, 0o644)
	return p
}

// WriteIntermediate writes the intermediate certificate and its PKCS#8 key
// to dir/intermediate.crt (0644) and dir/intermediate.key (0600).
func (ca *CA) WriteIntermediate(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile = filepath.Join(dir, "intermediate.crt")
	keyFile = filepath.Join(dir, "intermediate.key")
	writeFile(t, certFile, ca.IntermediatePEM, 0o644)
	writeFile(t, keyFile, encodeKey(t, ca.intermediateKey, "pkcs8"), 0o600)
	return certFile, keyFile
}

// Issue signs a leaf described by spec with the intermediate.
func (ca *CA) Issue(t testing.TB, spec CertSpec) *Leaf {
	t.Helper()
	now := time.Now()
	if spec.NotBefore.IsZero() {
		spec.NotBefore = now.Add(-time.Minute)
	}
	if spec.NotAfter.IsZero() {
		spec.NotAfter = now.Add(time.Hour)
	}
	if spec.CommonName == "" {
		spec.CommonName = "test-client"
		if spec.Server {
			spec.CommonName = "localhost"
		}
	}
	if spec.Server && len(spec.DNSNames) == 0 && len(spec.IPs) == 0 && len(spec.URIs) == 0 {
		spec.DNSNames = []string{"localhost"}
		spec.IPs = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	key := generateKey(t, spec.KeyType)
	usage := x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	var eku []x509.ExtKeyUsage
	if spec.Server {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if spec.Client {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: spec.CommonName},
		DNSNames:              spec.DNSNames,
		IPAddresses:           spec.IPs,
		URIs:                  spec.URIs,
		NotBefore:             spec.NotBefore,
		NotAfter:              spec.NotAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
	}
	cert := createCert(t, tmpl, ca.Intermediate, key.Public(), ca.intermediateKey)
	chainPEM := certPEM(cert)
	chain := [][]byte{cert.Raw}
	if !spec.SkipIntermediate {
		chainPEM = append(chainPEM, ca.IntermediatePEM...)
		chain = append(chain, ca.Intermediate.Raw)
	}
	return &Leaf{
		Cert:    cert,
		CertPEM: chainPEM,
		KeyPEM:  encodeKey(t, key, spec.KeyFormat),
		Key:     key,
		TLS:     tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: cert},
	}
}

// WriteFiles writes CertPEM (0644) and KeyPEM (0600) into dir, named after
// the common name, and returns their paths. A second leaf with the same
// common name in the same dir gets its serial number appended.
func (l *Leaf) WriteFiles(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	base := sanitize(l.Cert.Subject.CommonName)
	certFile = filepath.Join(dir, base+".crt")
	keyFile = filepath.Join(dir, base+".key")
	if _, err := os.Stat(certFile); err == nil {
		base += "-" + l.Cert.SerialNumber.Text(16)
		certFile = filepath.Join(dir, base+".crt")
		keyFile = filepath.Join(dir, base+".key")
	}
	writeFile(t, certFile, l.CertPEM, 0o644)
	writeFile(t, keyFile, l.KeyPEM, 0o600)
	return certFile, keyFile
}

func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
	s = strings.Trim(s, ".")
	if s == "" {
		return "leaf"
	}
	return s
}

func generateKey(t testing.TB, keyType string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch keyType {
	case "", "ecdsa":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("testenv: unknown CertSpec.KeyType %q: use ecdsa, rsa or ed25519", keyType)
	}
	if err != nil {
		t.Fatalf("testenv: generate %s key: %v", keyType, err)
	}
	return k
}

func encodeKey(t testing.TB, key crypto.Signer, format string) []byte {
	t.Helper()
	var block *pem.Block
	switch format {
	case "", "pkcs8":
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatalf("testenv: marshal PKCS#8 key: %v", err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	case "pkcs1":
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			t.Fatalf("testenv: CertSpec.KeyFormat pkcs1 needs KeyType rsa, got %T", key)
		}
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	case "sec1":
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			t.Fatalf("testenv: CertSpec.KeyFormat sec1 needs KeyType ecdsa, got %T", key)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatalf("testenv: marshal SEC 1 key: %v", err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	default:
		t.Fatalf("testenv: unknown CertSpec.KeyFormat %q: use pkcs8, pkcs1 or sec1", format)
	}
	return pem.EncodeToMemory(block)
}

func createCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatalf("testenv: create certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testenv: parse certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	return cert
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("testenv: serial number: %v", err)
	}
	return n.Add(n, big.NewInt(1))
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: random: %v", err)
	}
	return fmt.Sprintf("%x", b)
}

// writeFile writes data to path atomically (temp file + rename) with perm.
func writeFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		t.Fatalf("testenv: write %s: %v", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		t.Fatalf("testenv: write %s: %v", path, err)
	}
}

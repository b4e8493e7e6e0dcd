// Package pki owns the project's throwaway certificate authorities, for the
// hermetic demo, the benchmarks and (through internal/testsupport/testenv) every test:
// a root that signs one intermediate, which signs every leaf, all in memory.
// It is not a CA for production use.
package pki

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
	"time"
)

// CA is a throwaway certificate authority: a self-signed root that signs
// one intermediate, which signs every leaf.
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

// NewCA returns a fresh root and intermediate CA whose common names start
// with name ("goproxy-setup test" when empty). Their validity (two days
// back, thirty days ahead) encloses any leaf a caller is likely to ask for.
func NewCA(name string) (*CA, error) {
	if name == "" {
		name = "goproxy-setup test"
	}
	now := time.Now()
	suffix, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	rootKey, err := GenerateKey("ecdsa")
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " root " + suffix, Organization: []string{"goproxy-setup tests"}},
		NotBefore:             now.Add(-48 * time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	root, err := createCert(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	intKey, err := GenerateKey("ecdsa")
	if err != nil {
		return nil, err
	}
	intTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " intermediate " + suffix, Organization: []string{"goproxy-setup tests"}},
		NotBefore:             rootTmpl.NotBefore,
		NotAfter:              rootTmpl.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	intermediate, err := createCert(intTmpl, root, intKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	return &CA{
		Root:            root,
		RootPEM:         CertPEM(root),
		Intermediate:    intermediate,
		IntermediatePEM: CertPEM(intermediate),
		rootKey:         rootKey,
		intermediateKey: intKey,
	}, nil
}

// Pool returns a pool holding only the root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// RootKey returns the root's private key, for callers that sign something
// other than a leaf (for example a step-ca configuration).
func (ca *CA) RootKey() crypto.Signer { return ca.rootKey }

// IntermediateKey returns the intermediate's private key.
func (ca *CA) IntermediateKey() crypto.Signer { return ca.intermediateKey }

// Server issues a server leaf for localhost, 127.0.0.1 and ::1.
func (ca *CA) Server() (tls.Certificate, error) {
	l, err := ca.Issue(CertSpec{Server: true})
	if err != nil {
		return tls.Certificate{}, err
	}
	return l.TLS, nil
}

// Client issues a client leaf named cn.
func (ca *CA) Client(cn string) (tls.Certificate, error) {
	l, err := ca.Issue(CertSpec{Client: true, CommonName: cn})
	if err != nil {
		return tls.Certificate{}, err
	}
	return l.TLS, nil
}

// Issue signs a leaf described by spec with the intermediate.
func (ca *CA) Issue(spec CertSpec) (*Leaf, error) {
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
	key, err := GenerateKey(spec.KeyType)
	if err != nil {
		return nil, err
	}
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
	cert, err := createCert(tmpl, ca.Intermediate, key.Public(), ca.intermediateKey)
	if err != nil {
		return nil, err
	}
	keyPEM, err := EncodeKey(key, spec.KeyFormat)
	if err != nil {
		return nil, err
	}
	chainPEM := CertPEM(cert)
	chain := [][]byte{cert.Raw}
	if !spec.SkipIntermediate {
		chainPEM = append(chainPEM, ca.IntermediatePEM...)
		chain = append(chain, ca.Intermediate.Raw)
	}
	return &Leaf{
		Cert:    cert,
		CertPEM: chainPEM,
		KeyPEM:  keyPEM,
		Key:     key,
		TLS:     tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: cert},
	}, nil
}

// GenerateKey returns a new key: "ecdsa" (P-256, also for ""), "rsa" (2048
// bits) or "ed25519".
func GenerateKey(keyType string) (crypto.Signer, error) {
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
		return nil, fmt.Errorf("pki: unknown key type %q: use ecdsa, rsa or ed25519", keyType)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: generate %s key: %w", keyType, err)
	}
	return k, nil
}

// EncodeKey returns key as PEM: "pkcs8" (also for ""), "pkcs1" (rsa only)
// or "sec1" (ecdsa only).
func EncodeKey(key crypto.Signer, format string) ([]byte, error) {
	var block *pem.Block
	switch format {
	case "", "pkcs8":
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("pki: marshal PKCS#8 key: %w", err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	case "pkcs1":
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("pki: key format pkcs1 needs key type rsa, got %T", key)
		}
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	case "sec1":
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("pki: key format sec1 needs key type ecdsa, got %T", key)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("pki: marshal SEC 1 key: %w", err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	default:
		return nil, fmt.Errorf("pki: unknown key format %q: use pkcs8, pkcs1 or sec1", format)
	}
	return pem.EncodeToMemory(block), nil
}

// CertPEM returns c PEM-encoded.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func createCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	tmpl.SerialNumber = sn.Add(sn, big.NewInt(1))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("pki: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return cert, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pki: random: %w", err)
	}
	return fmt.Sprintf("%x", b), nil
}

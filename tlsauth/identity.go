// Package tlsauth owns the client identity presented to the module proxy:
// loading a certificate chain and key from PEM (RSA, ECDSA, Ed25519 keys in
// PKCS#1, PKCS#8 or SEC1), checking key custody (mode) and validity,
// enrolling with a smallstep step-ca, renewing, and the TLS configuration
// that presents the certificate only to the origin it belongs to.
//
// The TLS policy is deliberately narrow: TLS 1.2 is the minimum and there is
// no switch to skip server verification.
//
// Enrolment talks to step-ca with net/http and crypto/x509 rather than
// github.com/smallstep/certificates/ca. With a tiny main making the same
// calls, the ca package compiles 700 packages from 96 modules into a 32.8 MB
// binary; the standard-library client compiles 187 packages from 1 module
// into 9.1 MB (cold build 162 s vs 84 s on the CI machine). The ca package
// also reads STEP_TLS_TUNNEL in an init function and NewClient loads ~/.step
// files. The protocol is four calls (GET /root/<sha256>, GET /provisioners,
// POST /1.0/sign, POST /1.0/renew); the tests run the real step-ca.
package tlsauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// KeyPermissionError reports a private key file that group or others can
// read.
type KeyPermissionError struct {
	File string
	Mode fs.FileMode
}

func (e *KeyPermissionError) Error() string {
	return fmt.Sprintf("client key %s has mode %04o, readable by group or others: run 'chmod 600 %s'", e.File, e.Mode.Perm(), e.File)
}

// ValidityError reports a certificate outside its validity period.
type ValidityError struct {
	Subject   string
	NotBefore time.Time
	NotAfter  time.Time
	Now       time.Time
}

// Expired reports whether the certificate has expired (rather than being
// not yet valid).
func (e *ValidityError) Expired() bool { return e.Now.After(e.NotAfter) }

func (e *ValidityError) Error() string {
	if e.Expired() {
		return fmt.Sprintf("client certificate %q expired at %s (%s ago): renew it or enrol again", e.Subject, e.NotAfter.UTC().Format(time.RFC3339), e.Now.Sub(e.NotAfter).Round(time.Second))
	}
	return fmt.Sprintf("client certificate %q is not valid until %s: check the clock of this machine and of the CA", e.Subject, e.NotBefore.UTC().Format(time.RFC3339))
}

// EncryptedKeyError reports a private key that is encrypted (PKCS#8
// "ENCRYPTED PRIVATE KEY", or a legacy PEM block with "Proc-Type:
// 4,ENCRYPTED"): the agent has no passphrase to decrypt it with.
type EncryptedKeyError struct {
	// File is the key file, "" when the key did not come from a file.
	File string
}

func (e *EncryptedKeyError) Error() string {
	f := e.File
	if f == "" {
		return "client key is encrypted: decrypt it first (e.g. openssl pkey -in KEY -out plain.key)"
	}
	return fmt.Sprintf("client key %s is encrypted: decrypt it first (e.g. openssl pkey -in %s -out plain.key)", f, f)
}

// ErrKeyMismatch is returned when the private key does not belong to the
// certificate.
var ErrKeyMismatch = errors.New("the private key does not match the certificate's public key: pass the key that was generated with this certificate")

// now is the clock used for validity checks; tests replace it.
var now = time.Now

// Identity holds the current client certificate. It is safe for concurrent
// use; Set swaps the certificate atomically, so renewals and reloads never
// fail or stall a handshake in flight.
type Identity struct {
	cur atomic.Pointer[tls.Certificate]

	mu       sync.Mutex // serialises Reload
	certFile string
	keyFile  string
	modTime  time.Time
	// anyMode skips the key file's mode check (LoadSecretVolume).
	anyMode bool
}

// New returns an identity for cert after validating it: the leaf parses, is
// within its validity period, and the private key matches it.
func New(cert tls.Certificate) (*Identity, error) {
	id := &Identity{}
	if err := id.Set(cert); err != nil {
		return nil, err
	}
	return id, nil
}

// LoadPEM parses a certificate chain and a private key from PEM and returns
// a validated identity.
func LoadPEM(certPEM, keyPEM []byte) (*Identity, error) {
	cert, err := parsePEM(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return New(cert)
}

// LoadFiles reads the certificate chain and key from PEM files. It refuses a
// key file readable by group or others, an expired or not yet valid
// certificate, and a key that does not match the certificate. Reload
// re-reads the files when they change.
func LoadFiles(certFile, keyFile string) (*Identity, error) {
	id := &Identity{certFile: certFile, keyFile: keyFile}
	if _, err := id.Reload(); err != nil {
		return nil, err
	}
	return id, nil
}

// LoadSecretVolume is LoadFiles for a certificate and key mounted from a
// Kubernetes Secret into a sidecar container: kubelet writes Secret files
// 0644 by default (0440 with an fsGroup), and no mode keeps a non-root
// container from reading them when the files are root's. There the key's
// boundary is the container, not the file mode: only the containers that
// mount the Secret can reach the file, and no other user runs in the
// sidecar. So the mode is not checked; everything else is, and a Secret
// updated in place (its files are swapped atomically) is picked up by
// Reload as with LoadFiles.
func LoadSecretVolume(certFile, keyFile string) (*Identity, error) {
	id := &Identity{certFile: certFile, keyFile: keyFile, anyMode: true}
	if _, err := id.Reload(); err != nil {
		return nil, err
	}
	return id, nil
}

// Reload re-reads the files an identity was loaded from when either changed
// since the last load and reports whether it swapped the certificate. An
// identity not loaded from files never reloads. On error the previous
// certificate stays in use.
func (id *Identity) Reload() (bool, error) {
	if id.certFile == "" {
		return false, nil
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	latest := time.Time{}
	for _, f := range []string{id.certFile, id.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return false, errkind.Mark(errkind.BadInput, fmt.Errorf("read client identity: %w", err))
		}
		if fi.ModTime().After(latest) {
			latest = fi.ModTime()
		}
	}
	if id.cur.Load() != nil && !latest.After(id.modTime) {
		return false, nil
	}
	certPEM, keyPEM, err := readFiles(id.certFile, id.keyFile, !id.anyMode)
	if err != nil {
		return false, err
	}
	cert, err := parsePEM(certPEM, keyPEM)
	var enc *EncryptedKeyError
	if errors.As(err, &enc) {
		return false, errkind.Mark(errkind.BadInput, &EncryptedKeyError{File: id.keyFile})
	}
	if err != nil {
		return false, fmt.Errorf("%s, %s: %w", id.certFile, id.keyFile, err)
	}
	if err := id.Set(cert); err != nil {
		return false, fmt.Errorf("%s: %w", id.certFile, err)
	}
	id.modTime = latest
	return true, nil
}

// readFiles reads the PEM files; checkMode refuses a key file that group or
// others can read.
func readFiles(certFile, keyFile string, checkMode bool) (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(certFile)
	if err != nil {
		return nil, nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read client certificate: %w", err))
	}
	f, err := os.Open(keyFile)
	if err != nil {
		return nil, nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read client key: %w", err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read client key: %w", err))
	}
	if checkMode && fi.Mode().Perm()&0o077 != 0 {
		return nil, nil, errkind.Mark(errkind.BadInput, &KeyPermissionError{File: keyFile, Mode: fi.Mode()})
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read client key %s: %w", keyFile, err))
	}
	return certPEM, buf.Bytes(), nil
}

// Set validates cert and makes it the current certificate.
func (id *Identity) Set(cert tls.Certificate) error {
	if len(cert.Certificate) == 0 {
		return errkind.Mark(errkind.BadInput, errors.New("client certificate: no certificate found"))
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return errkind.Mark(errkind.BadInput, fmt.Errorf("parse client certificate: %w", err))
		}
		cert.Leaf = leaf
	}
	if err := checkKeyMatch(leaf, cert.PrivateKey); err != nil {
		return errkind.Mark(errkind.BadInput, err)
	}
	t := now()
	if t.Before(leaf.NotBefore) || t.After(leaf.NotAfter) {
		return errkind.Mark(errkind.BadInput, &ValidityError{Subject: subjectName(leaf), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Now: t})
	}
	id.cur.Store(&cert)
	return nil
}

// Certificate returns the current certificate; its Leaf is set.
func (id *Identity) Certificate() *tls.Certificate { return id.cur.Load() }

// GetClientCertificate implements tls.Config.GetClientCertificate. It first
// picks up changed files (Reload) so a rotated certificate is used by the
// next handshake; a failed reload keeps the previous certificate.
func (id *Identity) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	_, _ = id.Reload()
	return id.cur.Load(), nil
}

// ClientConfig returns the TLS configuration for connections to an upstream:
// TLS 1.2 minimum, roots (nil means the system roots), and id's certificate
// when the server asks for one (id may be nil: no client certificate).
//
// The configuration is meant for one origin's transport: callers must not
// share it with a transport that follows redirects to other hosts (see
// agent/upstream, which gives every origin its own transport).
func ClientConfig(id *Identity, roots *x509.CertPool) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
	}
	if id != nil {
		c.GetClientCertificate = id.GetClientCertificate
	}
	return c
}

// LoadRoots reads a PEM bundle of extra root certificates and returns the
// system roots plus those (or only those when the system pool is absent).
func LoadRoots(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read CA certificates: %w", err))
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read CA certificates: %s holds no PEM certificate: pass a file with -----BEGIN CERTIFICATE----- blocks", file))
	}
	return pool, nil
}

// WriteFiles writes cert (chain) and its key as PEM into dir, atomically:
// dir is created 0700, the key file is 0600. It returns the file names.
func WriteFiles(dir string, cert tls.Certificate) (certFile, keyFile string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("write client identity: %w", err)
	}
	certPEM, keyPEM, err := IdentityPEM(cert)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if err := atomicfile.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := atomicfile.WriteFile(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// IdentityPEM returns the PEM encoding of a certificate chain and its key
// (PKCS#8), as WriteFiles writes them and the agent's handoff carries them.
func IdentityPEM(cert tls.Certificate) (certPEM, keyPEM []byte, err error) {
	var b bytes.Buffer
	for _, der := range cert.Certificate {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	keyPEM, err = EncodeKey(cert.PrivateKey)
	return b.Bytes(), keyPEM, err
}

// LoadPair is LoadFiles for an optional identity given as a pair of
// flags: nil when both files are empty, bad input when only one is given.
func LoadPair(certFile, keyFile string) (*Identity, error) {
	return loadPair(certFile, keyFile, LoadFiles)
}

// LoadSecretVolumePair is LoadPair for a pair mounted from a Kubernetes
// Secret (LoadSecretVolume).
func LoadSecretVolumePair(certFile, keyFile string) (*Identity, error) {
	return loadPair(certFile, keyFile, LoadSecretVolume)
}

func loadPair(certFile, keyFile string, load func(certFile, keyFile string) (*Identity, error)) (*Identity, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errkind.Mark(errkind.BadInput, errors.New("--client-cert and --client-key go together: give both or neither"))
	}
	return load(certFile, keyFile)
}

// EncodeKey returns key as a PKCS#8 PEM block.
func EncodeKey(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parsePEM parses a chain of CERTIFICATE blocks and one private key block
// (PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE KEY" or PKCS#8 "PRIVATE KEY").
// Errors never include key material.
func parsePEM(certPEM, keyPEM []byte) (tls.Certificate, error) {
	var cert tls.Certificate
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			cert.Certificate = append(cert.Certificate, b.Bytes)
		}
	}
	if len(cert.Certificate) == 0 {
		return cert, errkind.Mark(errkind.BadInput, errors.New("client certificate: no PEM CERTIFICATE block found: pass the certificate (chain) file, not the key"))
	}
	var key crypto.PrivateKey
	for rest := keyPEM; key == nil; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return cert, errkind.Mark(errkind.BadInput, errors.New("client key: no PEM private key block found: pass an unencrypted PKCS#1, PKCS#8 or SEC1 key"))
		}
		if strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") || b.Type == "ENCRYPTED PRIVATE KEY" {
			return cert, errkind.Mark(errkind.BadInput, &EncryptedKeyError{})
		}
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return cert, errkind.Mark(errkind.BadInput, fmt.Errorf("client key: malformed %s block: %w", b.Type, err))
		}
	}
	cert.PrivateKey = key
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return cert, errkind.Mark(errkind.BadInput, fmt.Errorf("parse client certificate: %w", err))
	}
	cert.Leaf = leaf
	return cert, nil
}

func checkKeyMatch(leaf *x509.Certificate, key crypto.PrivateKey) error {
	type publicKeyer interface{ Public() crypto.PublicKey }
	pk, ok := key.(publicKeyer)
	if !ok {
		return fmt.Errorf("client key: unsupported key type %T: use RSA, ECDSA or Ed25519", key)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := pk.Public().(equaler)
	if !ok {
		return fmt.Errorf("client key: unsupported key type %T: use RSA, ECDSA or Ed25519", key)
	}
	switch key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		return fmt.Errorf("client key: unsupported key type %T: use RSA, ECDSA or Ed25519", key)
	}
	if !pub.Equal(leaf.PublicKey) {
		return ErrKeyMismatch
	}
	return nil
}

func subjectName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

package testenv

import (
	"crypto"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/pki"
)

// CA is a per-test throwaway certificate authority (internal/pki: a root
// that signs one intermediate, which signs every leaf). Nothing is written
// to disk unless a test asks for it.
type CA struct {
	*pki.CA
}

// CertSpec describes a leaf certificate to issue (see pki.CertSpec).
type CertSpec = pki.CertSpec

// Leaf is an issued end-entity certificate with its key (see pki.Leaf).
type Leaf struct {
	*pki.Leaf
}

// NewCA returns a fresh root and intermediate CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca, err := pki.NewCA("")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return &CA{ca}
}

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
	writeFile(t, keyFile, mustEncodeKey(t, ca.IntermediateKey()), 0o600)
	return certFile, keyFile
}

// Issue signs a leaf described by spec with the intermediate.
func (ca *CA) Issue(t testing.TB, spec CertSpec) *Leaf {
	t.Helper()
	l, err := ca.CA.Issue(spec)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return &Leaf{l}
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

func mustEncodeKey(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	b, err := pki.EncodeKey(key, "pkcs8")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return b
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

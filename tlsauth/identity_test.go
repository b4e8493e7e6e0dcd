package tlsauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// TestEncryptedKey: an encrypted key, legacy PEM (Proc-Type: 4,ENCRYPTED)
// or PKCS#8, is refused as bad input naming the file and the way to
// decrypt it, not as a malformed key.
func TestEncryptedKey(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	leaf := ca.Issue(t, testenv.CertSpec{Client: true, KeyType: "rsa", KeyFormat: "pkcs1"})
	dir := t.TempDir()
	certFile, _ := leaf.WriteFiles(t, dir)
	key := leaf.TLS.PrivateKey.(*rsa.PrivateKey)
	//lint:ignore SA1019 the legacy format is what users bring; only a test writes it.
	legacy, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), []byte("passphrase"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"legacy.key": legacy,
		"pkcs8.key":  {Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("0\x82opaque")},
	} {
		keyFile := filepath.Join(dir, name)
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadFiles(certFile, keyFile)
		want := "client key " + keyFile + " is encrypted: decrypt it first (e.g. openssl pkey -in " + keyFile + " -out plain.key)"
		if err == nil || err.Error() != want {
			t.Errorf("%s: LoadFiles error %v, want %q", name, err, want)
		}
		if errkind.Of(err) != errkind.BadInput {
			t.Errorf("%s: kind %v, want bad input", name, errkind.Of(err))
		}
		if _, err := LoadPEM(leaf.CertPEM, pem.EncodeToMemory(block)); err == nil || !strings.Contains(err.Error(), "is encrypted: decrypt it first") {
			t.Errorf("%s: LoadPEM error %v, want it to say the key is encrypted", name, err)
		}
	}
}

// TestLoadSecretVolume: a key laid out as kubelet mounts a Secret (files
// 0644 behind the ..data link, swapped atomically on an update) is
// refused by LoadFiles for its mode and loaded by LoadSecretVolume, which
// picks up the updated Secret on the next handshake; a mismatched pair is
// still refused.
func TestLoadSecretVolume(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	first := ca.Issue(t, testenv.CertSpec{Client: true, CommonName: "first"})
	second := ca.Issue(t, testenv.CertSpec{Client: true, CommonName: "second"})
	mount := t.TempDir()
	// writeData lays out a Secret version as kubelet's atomic writer does:
	// a timestamped dir, ..data pointing at it, the keys linked through
	// ..data.
	writeData := func(version string, leaf *testenv.Leaf) {
		dir := filepath.Join(mount, version)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tmp := filepath.Join(mount, "..data_tmp")
		if err := os.Symlink(version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeData("..v1", first)
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(mount, name)); err != nil {
			t.Fatal(err)
		}
	}
	certFile, keyFile := filepath.Join(mount, "tls.crt"), filepath.Join(mount, "tls.key")

	var perm *KeyPermissionError
	if _, err := LoadFiles(certFile, keyFile); !errors.As(err, &perm) {
		t.Fatalf("LoadFiles of a 0644 key: got %v, want a KeyPermissionError", err)
	}
	id, err := LoadSecretVolume(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadSecretVolume: %v", err)
	}
	if got := id.Certificate().Leaf.Subject.CommonName; got != "first" {
		t.Fatalf("loaded %q, want first", got)
	}
	// The update's files are newer than the first load's.
	later := time.Now().Add(2 * time.Second)
	writeData("..v2", second)
	for _, f := range []string{"..v2/tls.crt", "..v2/tls.key"} {
		os.Chtimes(filepath.Join(mount, f), later, later)
	}
	cert, _ := id.GetClientCertificate(nil)
	if got := cert.Leaf.Subject.CommonName; got != "second" {
		t.Errorf("after the Secret's update the handshake presents %q, want second", got)
	}
	mixed := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(mixed, first.KeyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecretVolume(certFile, mixed); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("LoadSecretVolume of a key of another certificate: got %v, want ErrKeyMismatch", err)
	}
}

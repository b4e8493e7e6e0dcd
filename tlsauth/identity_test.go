package tlsauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

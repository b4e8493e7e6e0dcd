package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

func TestEnrollCommand(t *testing.T) {
	t.Parallel()
	ca := testenv.StartStepCA(t)
	dir := filepath.Join(t.TempDir(), "identity")
	token := ca.JWKToken(t, "runner.example.test")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"enroll", "--ca-url", ca.URL, "--ca-fingerprint", ca.Fingerprint,
		"--token", token, "--out-dir", dir, "--log-format", "text"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("enroll: %v\nstderr:\n%s", err, stderr.String())
	}
	certFile, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if got, want := stdout.String(), "GOPROXY_SETUP_CLIENT_CERT="+certFile+"\nGOPROXY_SETUP_CLIENT_KEY="+keyFile+"\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	for f, want := range map[string]os.FileMode{keyFile: 0o600, dir: 0o700} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %04o, want %04o", f, got, want)
		}
	}
	id, err := tlsauth.LoadFiles(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadFiles: %v", err)
	}
	first := id.Certificate().Leaf.SerialNumber
	if strings.Contains(stderr.String(), token) {
		t.Errorf("stderr contains the token:\n%s", stderr.String())
	}

	// Without a token: renew what is in the directory.
	stdout.Reset()
	if err := run(context.Background(), []string{"enroll", "--ca-url", ca.URL, "--ca-fingerprint", ca.Fingerprint, "--out-dir", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("enroll (renew): %v\nstderr:\n%s", err, stderr.String())
	}
	id, err = tlsauth.LoadFiles(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadFiles after renewal: %v", err)
	}
	if id.Certificate().Leaf.SerialNumber.Cmp(first) == 0 {
		t.Errorf("renewal kept serial %s, want a new certificate", first)
	}
}

func TestEnrollCommandErrors(t *testing.T) {
	t.Parallel()
	fp := strings.Repeat("0", 64)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no out-dir", []string{"--ca-url", "https://127.0.0.1:1", "--ca-fingerprint", fp, "--token", "x"}, "--out-dir is required"},
		{"no fingerprint", []string{"--ca-url", "https://127.0.0.1:1", "--token", "x", "--out-dir", "d"}, "--ca-fingerprint"},
		{"token and oidc", []string{"--ca-url", "https://127.0.0.1:1", "--ca-fingerprint", fp, "--token", "x", "--oidc", "github", "--out-dir", "d"}, "pass only one"},
		{"unknown oidc", []string{"--ca-url", "https://127.0.0.1:1", "--ca-fingerprint", fp, "--oidc", "jenkins", "--out-dir", "d"}, "use github or gitlab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"enroll"}, tc.args...), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("enroll %q = %v, want an error containing %q", tc.args, err, tc.want)
			}
			if got := errkind.Of(err); got != errkind.BadInput {
				t.Errorf("kind = %v, want bad input", got)
			}
		})
	}
}

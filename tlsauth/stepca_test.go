package tlsauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

func testLogger(buf *testenv.SyncBuffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Trace})
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestEnrollJWK(t *testing.T) {
	t.Parallel()
	ca := testenv.StartStepCA(t)
	var logs testenv.SyncBuffer
	tok := ca.JWKToken(t, "runner-1.ci.example.test", "127.0.0.9", "spiffe://ci.example.test/runner/1")
	start := time.Now()
	cert, err := Enroll(context.Background(), EnrollConfig{
		CAURL:       ca.URL,
		Fingerprint: strings.ToUpper(ca.Fingerprint), // case is ignored
		Token:       tok,
		Logger:      testLogger(&logs),
		Getenv:      envMap(nil),
	})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	t.Logf("enrolment took %s", time.Since(start))
	leaf := cert.Leaf
	if got, want := leaf.Subject.CommonName, "runner-1.ci.example.test"; got != want {
		t.Errorf("subject CN = %q, want %q", got, want)
	}
	if got := leaf.DNSNames; len(got) != 1 || got[0] != "runner-1.ci.example.test" {
		t.Errorf("DNS names = %q, want [runner-1.ci.example.test]", got)
	}
	if got := leaf.IPAddresses; len(got) != 1 || !got[0].Equal(net.ParseIP("127.0.0.9")) {
		t.Errorf("IPs = %v, want [127.0.0.9]", got)
	}
	if got := leaf.URIs; len(got) != 1 || got[0].String() != "spiffe://ci.example.test/runner/1" {
		t.Errorf("URIs = %v, want [spiffe://ci.example.test/runner/1]", got)
	}
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("key = %T, want ECDSA P-256", cert.PrivateKey)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), Intermediates: intermediates(t, cert.Certificate[1:]), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify as a client certificate: %v", err)
	}
	if _, err := New(cert); err != nil {
		t.Errorf("New(enrolled certificate): %v", err)
	}
	if strings.Contains(logs.String(), tok) {
		t.Errorf("log contains the token:\n%s", logs.String())
	}
}

func TestEnrollKeyTypes(t *testing.T) {
	t.Parallel()
	ca := testenv.StartStepCA(t)
	for _, kt := range []string{"ecdsa", "ed25519", "rsa"} {
		t.Run(kt, func(t *testing.T) {
			t.Parallel()
			cert, err := Enroll(context.Background(), EnrollConfig{
				CAURL: ca.URL, Fingerprint: ca.Fingerprint, KeyType: kt,
				Token: ca.JWKToken(t, kt+".example.test"),
			})
			if err != nil {
				t.Fatalf("Enroll(KeyType %q): %v", kt, err)
			}
			if got, want := cert.Leaf.PublicKeyAlgorithm.String(), map[string]string{"ecdsa": "ECDSA", "ed25519": "Ed25519", "rsa": "RSA"}[kt]; got != want {
				t.Errorf("public key algorithm = %s, want %s", got, want)
			}
		})
	}
}

func TestEnrollLifetime(t *testing.T) {
	t.Parallel()
	ca := testenv.StartStepCA(t)
	cert, err := Enroll(context.Background(), EnrollConfig{
		CAURL: ca.URL, Fingerprint: ca.Fingerprint, Lifetime: 20 * time.Second,
		Token: ca.JWKToken(t, "short.example.test"),
	})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if left := time.Until(cert.Leaf.NotAfter); left > 21*time.Second || left < 15*time.Second {
		t.Errorf("certificate expires in %s, want about 20s", left)
	}
}

func TestEnrollOIDC(t *testing.T) {
	t.Parallel()
	ca := testenv.StartStepCA(t)
	reqURL, reqToken := ca.GitHub.ActionsTokenEndpoint(t)
	githubEnv := map[string]string{
		"ACTIONS_ID_TOKEN_REQUEST_URL":   reqURL,
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": reqToken,
	}
	gitlab := ca.GitLab.Token(t, testenv.GitLabClaims())
	tests := []struct {
		name    string
		cfg     EnrollConfig
		wantURI string
		wantCN  string
	}{
		{
			name:    "github audience from provisioner",
			cfg:     EnrollConfig{OIDC: OIDCGitHub, Provisioner: testenv.StepCAGitHubProvisioner, Getenv: envMap(githubEnv)},
			wantURI: "https://token.actions.githubusercontent.com#repo:octo-org/octo-repo:ref:refs/heads/main",
			wantCN:  "repo:octo-org/octo-repo:ref:refs/heads/main",
		},
		{
			name:    "github explicit audience",
			cfg:     EnrollConfig{OIDC: OIDCGitHub, Audience: testenv.StepCAGitHubClientID, Getenv: envMap(githubEnv)},
			wantURI: "https://token.actions.githubusercontent.com#repo:octo-org/octo-repo:ref:refs/heads/main",
			wantCN:  "repo:octo-org/octo-repo:ref:refs/heads/main",
		},
		{
			name:    "gitlab default variable",
			cfg:     EnrollConfig{OIDC: OIDCGitLab, Getenv: envMap(map[string]string{DefaultGitLabTokenVar: gitlab})},
			wantURI: "https://gitlab.example.test#project_path:group/project:ref_type:branch:ref:main",
			wantCN:  "project_path:group/project:ref_type:branch:ref:main",
		},
		{
			name: "gitlab named variable and provisioner",
			cfg: EnrollConfig{OIDC: OIDCGitLab, GitLabTokenVar: "MY_ID_TOKEN", Provisioner: testenv.StepCAGitLabProvisioner,
				Getenv: envMap(map[string]string{"MY_ID_TOKEN": ca.GitLab.Token(t, testenv.GitLabClaims())})},
			wantURI: "https://gitlab.example.test#project_path:group/project:ref_type:branch:ref:main",
			wantCN:  "project_path:group/project:ref_type:branch:ref:main",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.CAURL, cfg.Fingerprint = ca.URL, ca.Fingerprint
			cert, err := Enroll(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			if got := cert.Leaf.Subject.CommonName; got != tc.wantCN {
				t.Errorf("subject CN = %q, want %q", got, tc.wantCN)
			}
			if got := cert.Leaf.URIs; len(got) != 1 || got[0].String() != tc.wantURI {
				t.Errorf("URIs = %v, want [%s]", got, tc.wantURI)
			}
		})
	}
}

func TestEnrollErrors(t *testing.T) {
	t.Parallel()
	ca := testenv.StartStepCA(t, testenv.StepCADenyPolicy())
	closed := closedPortURL(t)

	used := ca.JWKToken(t, "used.example.test")
	if _, err := Enroll(context.Background(), EnrollConfig{CAURL: ca.URL, Fingerprint: ca.Fingerprint, Token: used}); err != nil {
		t.Fatalf("first use of a token: %v", err)
	}
	expired := ca.JWKClaims(t, "late.example.test")
	expired["iat"] = time.Now().Add(-20 * time.Minute).Unix()
	expired["nbf"] = expired["iat"]
	expired["exp"] = time.Now().Add(-10 * time.Minute).Unix()
	wrongAud := ca.JWKClaims(t, "aud.example.test")
	wrongAud["aud"] = "https://other-ca.example.test/1.0/sign"
	ghost := ca.JWKClaims(t, "ghost.example.test")
	ghost["iss"] = "ghost"
	reqURL, reqToken := ca.GitHub.ActionsTokenEndpoint(t)
	gitlabWrongAud := ca.GitLab.Token(t, map[string]any{"sub": "project_path:g/p:ref_type:branch:ref:main", "aud": "something-else"})
	otherFP := strings.Repeat("ab", 32)

	tests := []struct {
		name     string
		cfg      EnrollConfig
		reason   Reason
		kind     errkind.Kind
		contains string
	}{
		{"wrong fingerprint", EnrollConfig{Fingerprint: otherFP, Token: ca.JWKToken(t, "a.example.test")}, ReasonFingerprint, errkind.BadInput, "no root certificate with SHA-256 fingerprint " + otherFP},
		{"malformed fingerprint", EnrollConfig{Fingerprint: "abc", Token: ca.JWKToken(t, "a.example.test")}, ReasonBadConfig, errkind.BadInput, "64 hex digits"},
		{"http CA URL", EnrollConfig{CAURL: strings.Replace(ca.URL, "https", "http", 1), Token: ca.JWKToken(t, "a.example.test")}, ReasonBadConfig, errkind.BadInput, "https URL"},
		{"unknown provisioner name", EnrollConfig{Provisioner: "nope", Token: ca.JWKToken(t, "a.example.test")}, ReasonUnknownProvisioner, errkind.BadInput, `no provisioner named "nope"`},
		{"token for another provisioner", EnrollConfig{Provisioner: testenv.StepCAOtherJWKProvisioner, Token: ca.JWKToken(t, "a.example.test")}, ReasonUnknownProvisioner, errkind.BadInput, `for provisioner "ci", not "other"`},
		{"token issuer unknown", EnrollConfig{Token: ca.SignJWK(t, testenv.StepCAJWKProvisioner, ghost)}, ReasonUnknownProvisioner, errkind.BadInput, `issuer "ghost" names no JWK provisioner`},
		{"token signed by a foreign key", EnrollConfig{Token: ca.SignJWK(t, "foreign", ca.JWKClaims(t, "a.example.test"))}, ReasonUnknownProvisioner, errkind.BadInput, "not that provisioner's"},
		{"token expired", EnrollConfig{Token: ca.SignJWK(t, testenv.StepCAJWKProvisioner, expired)}, ReasonTokenExpired, errkind.BadInput, "the token expired at"},
		{"token wrong audience", EnrollConfig{Token: ca.SignJWK(t, testenv.StepCAJWKProvisioner, wrongAud)}, ReasonTokenAudience, errkind.BadInput, "is not this CA's sign endpoint"},
		{"token already used", EnrollConfig{Token: used}, ReasonTokenRejected, errkind.BadInput, "already used"},
		{"token not a JWT", EnrollConfig{Token: "not-a-token-canary"}, ReasonTokenInvalid, errkind.BadInput, "not a JWT"},
		{"name not allowed", EnrollConfig{Token: ca.JWKToken(t, "evil."+testenv.StepCADeniedDomain)}, ReasonNameNotAllowed, errkind.BadInput, `not allowed`},
		{"CA unreachable", EnrollConfig{CAURL: closed, Token: ca.JWKToken(t, "a.example.test")}, ReasonUnreachable, errkind.Unreachable, "unreachable"},
		{"github without id-token permission", EnrollConfig{OIDC: OIDCGitHub, Provisioner: testenv.StepCAGitHubProvisioner, Getenv: envMap(nil)}, ReasonTokenSource, errkind.BadInput, "id-token: write"},
		{"github request token refused", EnrollConfig{OIDC: OIDCGitHub, Provisioner: testenv.StepCAGitHubProvisioner, Getenv: envMap(map[string]string{
			"ACTIONS_ID_TOKEN_REQUEST_URL": reqURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "wrong-request-token"})}, ReasonTokenSource, errkind.BadInput, "requesting the GitHub ID token"},
		{"github wrong audience", EnrollConfig{OIDC: OIDCGitHub, Audience: "not-the-client-id", Getenv: envMap(map[string]string{
			"ACTIONS_ID_TOKEN_REQUEST_URL": reqURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": reqToken})}, ReasonTokenAudience, errkind.BadInput, "matches the clientID of no OIDC provisioner"},
		{"gitlab variable empty", EnrollConfig{OIDC: OIDCGitLab, Getenv: envMap(nil)}, ReasonTokenSource, errkind.BadInput, "id_tokens"},
		{"gitlab wrong audience", EnrollConfig{OIDC: OIDCGitLab, Provisioner: testenv.StepCAGitLabProvisioner, Getenv: envMap(map[string]string{DefaultGitLabTokenVar: gitlabWrongAud})}, ReasonTokenAudience, errkind.BadInput, `expects "` + testenv.StepCAGitLabClientID + `"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			if cfg.CAURL == "" {
				cfg.CAURL = ca.URL
			}
			if cfg.Fingerprint == "" {
				cfg.Fingerprint = ca.Fingerprint
			}
			var logs testenv.SyncBuffer
			cfg.Logger = testLogger(&logs)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := Enroll(ctx, cfg)
			if err == nil {
				t.Fatalf("Enroll succeeded, want an error with reason %d", tc.reason)
			}
			t.Logf("error: %v", err)
			var ee *EnrollError
			if !errors.As(err, &ee) {
				t.Fatalf("error %q is %T, want *EnrollError", err, err)
			}
			if ee.Reason != tc.reason {
				t.Errorf("reason = %d, want %d (error: %v)", ee.Reason, tc.reason, err)
			}
			if got := errkind.Of(err); got != tc.kind {
				t.Errorf("kind = %v, want %v (error: %v)", got, tc.kind, err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not contain %q", err, tc.contains)
			}
			if ee.Fix == "" {
				t.Errorf("error %q names no fix", err)
			}
			// Canary: no secret in the error or the log.
			for _, secret := range []string{cfg.Token, reqToken, gitlabWrongAud} {
				if secret == "" {
					continue
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error contains a token: %v", err)
				}
				if strings.Contains(logs.String(), secret) {
					t.Errorf("log contains a token:\n%s", logs.String())
				}
			}
		})
	}
}

func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return fmt.Sprintf("https://%s", addr)
}

func intermediates(t *testing.T, ders [][]byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			t.Fatalf("parse chain certificate: %v", err)
		}
		p.AddCert(c)
	}
	return p
}

// BenchmarkEnrollJWK measures a whole enrolment on loopback: pin the root,
// list provisioners, generate a P-256 key, sign.
func BenchmarkEnrollJWK(b *testing.B) {
	ca := testenv.StartStepCA(b)
	tokens := make([]string, b.N)
	for i := range tokens {
		tokens[i] = ca.JWKToken(b, fmt.Sprintf("bench-%d.example.test", i))
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := Enroll(context.Background(), EnrollConfig{CAURL: ca.URL, Fingerprint: ca.Fingerprint, Token: tokens[i]}); err != nil {
			b.Fatalf("Enroll: %v", err)
		}
	}
}

// TestEnrollOIDCExampleTemplates runs the certificate templates of
// examples/step-ca, which keep the OIDC provisioners from certifying every
// GitHub repository or GitLab project, in the real step-ca.
func TestEnrollOIDCExampleTemplates(t *testing.T) {
	t.Parallel()
	read := func(name, from, to string) string {
		b, err := os.ReadFile(filepath.Join("..", "examples", "step-ca", "templates", name))
		if err != nil {
			t.Fatalf("read example template: %v", err)
		}
		return strings.ReplaceAll(string(b), from, to)
	}
	ca := testenv.StartStepCA(t, testenv.StepCAOIDCTemplates(
		read("github-actions.tpl", "my-org", "octo-org"),
		read("gitlab-ci.tpl", "my-group", "group")))
	foreignGitHub := testenv.GitHubClaims()
	foreignGitHub["repository_owner"] = "evil-org"
	foreignGitHub["repository"] = "evil-org/octo-repo"
	subgroup := testenv.GitLabClaims()
	subgroup["namespace_path"] = "group/sub"
	subgroup["project_path"] = "group/sub/project"
	foreignGitLab := testenv.GitLabClaims()
	foreignGitLab["namespace_path"] = "groupie"
	foreignGitLab["project_path"] = "groupie/project"
	tests := []struct {
		name   string
		token  string
		oidc   string
		wantCN string // empty: refused
	}{
		{"github own organisation", ca.GitHub.Token(t, testenv.GitHubClaims()), OIDCGitHub, "octo-org/octo-repo"},
		{"github other organisation", ca.GitHub.Token(t, foreignGitHub), OIDCGitHub, ""},
		{"gitlab own group", ca.GitLab.Token(t, testenv.GitLabClaims()), OIDCGitLab, "group/project"},
		{"gitlab subgroup", ca.GitLab.Token(t, subgroup), OIDCGitLab, "group/sub/project"},
		{"gitlab group with the same prefix", ca.GitLab.Token(t, foreignGitLab), OIDCGitLab, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Both token kinds go through the GitLab path (a variable) so
			// that the test controls the claims.
			cert, err := Enroll(context.Background(), EnrollConfig{
				CAURL: ca.URL, Fingerprint: ca.Fingerprint, OIDC: OIDCGitLab,
				Getenv: envMap(map[string]string{DefaultGitLabTokenVar: tc.token}),
			})
			if tc.wantCN == "" {
				var ee *EnrollError
				if !errors.As(err, &ee) || ee.Reason != ReasonNameNotAllowed {
					t.Fatalf("Enroll = %v, want a refusal with ReasonNameNotAllowed", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			if got := cert.Leaf.Subject.CommonName; got != tc.wantCN {
				t.Errorf("CN = %q, want %q", got, tc.wantCN)
			}
			if len(cert.Leaf.URIs) != 1 || !strings.Contains(cert.Leaf.URIs[0].String(), "#") {
				t.Errorf("URIs = %v, want one <issuer>#<sub>", cert.Leaf.URIs)
			}
		})
	}
}

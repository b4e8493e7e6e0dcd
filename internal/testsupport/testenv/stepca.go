package testenv

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Provisioner names and OIDC client IDs of the step-ca that StartStepCA
// runs.
const (
	// StepCAJWKProvisioner is the JWK provisioner that JWKToken signs for.
	StepCAJWKProvisioner = "ci"
	// StepCAOtherJWKProvisioner is a second JWK provisioner, with a key of
	// its own.
	StepCAOtherJWKProvisioner = "other"
	// StepCADeniedDomain is the domain that StepCADenyPolicy denies: a
	// certificate for any name under it is refused (403).
	StepCADeniedDomain = "denied.test"
	// StepCAGitHubProvisioner is the OIDC provisioner trusting the
	// GitHub-shaped issuer (StepCA.GitHub).
	StepCAGitHubProvisioner = "github-actions"
	// StepCAGitHubClientID is its clientID: the audience its tokens need.
	StepCAGitHubClientID = "goproxy-setup"
	// StepCAGitLabProvisioner is the OIDC provisioner trusting the
	// GitLab-shaped issuer (StepCA.GitLab).
	StepCAGitLabProvisioner = "gitlab-ci"
	// StepCAGitLabClientID is its clientID.
	StepCAGitLabClientID = "goproxy-setup-gitlab"
)

// StepCA is a real step-ca (the smallstep/certificates server, built by
// .ci/build-tools) running on loopback for one test, with a fresh root and
// intermediate, two JWK provisioners and two OIDC provisioners whose
// issuers also run on loopback. Certificates default to one minute
// (minimum 5 s, so tests may ask for shorter ones).
type StepCA struct {
	// URL is the CA's base URL, https://127.0.0.1:<port>.
	URL string
	// Fingerprint is the hex SHA-256 of the root certificate's DER.
	Fingerprint string
	// Root is the root certificate; RootFile holds it as PEM.
	Root     *x509.Certificate
	RootFile string
	// CA is the throwaway root and intermediate the step-ca signs with.
	CA *CA
	// GitHub and GitLab are the OIDC issuers the OIDC provisioners trust.
	GitHub, GitLab *OIDCIssuer
	// Dir is the CA's configuration directory (ca.json, certificates).
	Dir string

	opts  stepCAOptions
	jwk   *jwsKey
	other *jwsKey
	logs  *SyncBuffer
}

// StepCAOption changes the step-ca that StartStepCA runs.
type StepCAOption func(*stepCAOptions)

type stepCAOptions struct {
	denyPolicy                     bool
	githubTemplate, gitlabTemplate string
}

// StepCAOIDCTemplates sets the x509 certificate templates (text, as in
// examples/step-ca/templates) of the GitHub and GitLab OIDC provisioners;
// an empty one keeps step-ca's default template.
func StepCAOIDCTemplates(github, gitlab string) StepCAOption {
	return func(o *stepCAOptions) { o.githubTemplate, o.gitlabTemplate = github, gitlab }
}

// StepCADenyPolicy gives the CA an x509 policy denying DNS names under
// StepCADeniedDomain.
func StepCADenyPolicy() StepCAOption { return func(o *stepCAOptions) { o.denyPolicy = true } }

// StartStepCA starts a step-ca on 127.0.0.1 and waits until /health
// answers. It is stopped when the test ends; its log is printed if the test
// failed.
func StartStepCA(t testing.TB, opts ...StepCAOption) *StepCA {
	t.Helper()
	var o stepCAOptions
	for _, opt := range opts {
		opt(&o)
	}
	bin := Tool(t, "step-ca")
	dir := t.TempDir()
	ca := NewCA(t)
	rootFile := ca.WriteRoot(t, dir)
	intCert, intKey := ca.WriteIntermediate(t, dir)
	sum := sha256.Sum256(ca.Root.Raw)
	s := &StepCA{
		Fingerprint: hex.EncodeToString(sum[:]),
		Root:        ca.Root,
		RootFile:    rootFile,
		CA:          ca,
		Dir:         dir,
		opts:        o,
		jwk:         newJWSKey(t),
		other:       newJWSKey(t),
		logs:        &SyncBuffer{},
		GitHub: StartOIDCIssuer(t, "https://token.actions.githubusercontent.com",
			StepCAGitHubProvisioner, StepCAGitHubClientID),
		GitLab: StartOIDCIssuer(t, "https://gitlab.example.test",
			StepCAGitLabProvisioner, StepCAGitLabClientID),
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		s.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
		cfg := s.config(rootFile, intCert, intKey, port)
		cfgFile := filepath.Join(dir, "ca.json")
		writeFile(t, cfgFile, cfg, 0o600)
		if lastErr = s.start(t, bin, cfgFile); lastErr == nil {
			return s
		}
	}
	t.Fatalf("start step-ca: %v\nlog:\n%s", lastErr, strings.TrimSpace(s.logs.String()))
	return nil
}

func (s *StepCA) config(rootFile, intCert, intKey string, port int) []byte {
	claims := map[string]any{
		"minTLSCertDuration":     "5s",
		"defaultTLSCertDuration": "1m",
		"maxTLSCertDuration":     "24h",
	}
	cfg := map[string]any{
		"root":     rootFile,
		"crt":      intCert,
		"key":      intKey,
		"address":  fmt.Sprintf("127.0.0.1:%d", port),
		"dnsNames": []string{"127.0.0.1", "localhost"},
		"logger":   map[string]any{"format": "text"},
		"authority": map[string]any{
			"claims": claims,
			"provisioners": []any{
				map[string]any{"type": "JWK", "name": StepCAJWKProvisioner, "key": s.jwk.publicJWK()},
				map[string]any{"type": "JWK", "name": StepCAOtherJWKProvisioner, "key": s.other.publicJWK()},
				s.GitHub.provisioner(s.opts.githubTemplate),
				s.GitLab.provisioner(s.opts.gitlabTemplate),
			},
		},
		"tls": map[string]any{"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": false},
	}
	if s.opts.denyPolicy {
		// Provisioner policies come only from the admin API; the
		// authority's policy is what ca.json can set. With any policy,
		// step-ca parses the subject CN as a domain, which refuses OIDC
		// subjects such as GitLab's "project_path:g/p:..." (500).
		cfg["authority"].(map[string]any)["policy"] = map[string]any{
			"x509": map[string]any{"deny": map[string]any{"dns": []string{"*." + StepCADeniedDomain}}},
		}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err) // a map of plain values always marshals
	}
	return b
}

func (s *StepCA) start(t testing.TB, bin, cfgFile string) error {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, cfgFile)
	cmd.Dir = s.Dir
	cmd.Env = []string{"HOME=" + s.Dir, "STEPPATH=" + filepath.Join(s.Dir, "step"), "PATH=/usr/bin:/bin"}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cancel()
		<-exited
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.CA.Pool(), MinVersion: tls.VersionTLS12},
	}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			stop()
			return fmt.Errorf("step-ca exited: %v", err)
		default:
		}
		resp, err := client.Get(s.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("step-ca did not become healthy within 30s (last error %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	client.CloseIdleConnections()
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("step-ca log:\n%s", strings.TrimSpace(s.logs.String()))
		}
	})
	return nil
}

// Logs returns what step-ca has logged so far.
func (s *StepCA) Logs() string { return strings.TrimSpace(s.logs.String()) }

// Pool returns a pool holding only the CA's root.
func (s *StepCA) Pool() *x509.CertPool { return s.CA.Pool() }

// SignAudience is the audience a JWK token for /1.0/sign needs.
func (s *StepCA) SignAudience() string { return s.URL + "/1.0/sign" }

// JWKToken returns a one-time token from the "ci" JWK provisioner for sans
// (the first is the subject), valid for five minutes.
func (s *StepCA) JWKToken(t testing.TB, sans ...string) string {
	t.Helper()
	return s.SignJWK(t, StepCAJWKProvisioner, s.JWKClaims(t, sans...))
}

// JWKClaims returns the claims of a valid JWK one-time token for sans, for
// tests that alter one of them before SignJWK.
func (s *StepCA) JWKClaims(t testing.TB, sans ...string) map[string]any {
	t.Helper()
	sub := ""
	if len(sans) > 0 {
		sub = sans[0]
	}
	now := tokenNow()
	return map[string]any{
		"iss":  StepCAJWKProvisioner,
		"sub":  sub,
		"aud":  s.SignAudience(),
		"sans": sans,
		"iat":  now.Unix(),
		"nbf":  now.Unix(),
		"exp":  now.Add(5 * time.Minute).Unix(),
		"jti":  randomHex(t, 16),
	}
}

// SignJWK signs claims with the key of the JWK provisioner named prov
// ("ci" or "other"); any other name signs with a key the CA does not know.
func (s *StepCA) SignJWK(t testing.TB, prov string, claims map[string]any) string {
	t.Helper()
	k := s.jwk
	switch prov {
	case StepCAJWKProvisioner:
	case StepCAOtherJWKProvisioner:
		k = s.other
	default:
		k = newJWSKey(t)
	}
	return k.sign(t, claims)
}

// tokenNow is the issue time for tokens: the next whole second, because
// step-ca rejects a token issued (at one-second resolution) before it
// started.
func tokenNow() time.Time { return time.Now().Truncate(time.Second).Add(time.Second) }

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

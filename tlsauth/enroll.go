package tlsauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// EnrollConfig configures Enroll. CAURL, Fingerprint and exactly one of
// Token and OIDC are required.
type EnrollConfig struct {
	// CAURL is the step-ca base URL, https://ca.example.com[:port].
	CAURL string
	// Fingerprint is the hex SHA-256 of the CA's root certificate (colons
	// and case are ignored), as `step certificate fingerprint root_ca.crt`
	// prints it. The root is pinned by it: there is no trust on first use.
	Fingerprint string
	// Token is a one-time token from a JWK provisioner (`step ca token`).
	// It is a secret: it never appears in errors or logs.
	Token string
	// OIDC takes the token from the CI instead: OIDCGitHub requests an ID
	// token from the runner (the job needs `permissions: id-token: write`),
	// OIDCGitLab reads the id_tokens variable GitLabTokenVar.
	OIDC string
	// Audience is the audience to request for a GitHub ID token: the OIDC
	// provisioner's clientID. Empty means the clientID of Provisioner, or of
	// the CA's only OIDC provisioner. For GitLab it is checked against the
	// token's aud when set.
	Audience string
	// GitLabTokenVar names the environment variable that GitLab fills from
	// the job's id_tokens; DefaultGitLabTokenVar when empty.
	GitLabTokenVar string
	// Provisioner is the provisioner's name. Optional: the token names it
	// (JWK: iss and kid; OIDC: aud = clientID); when set, a token for another
	// provisioner is refused before it is spent.
	Provisioner string
	// KeyType is the type of the key generated for the certificate:
	// "ecdsa" (P-256, the default), "ed25519" or "rsa" (2048 bits).
	KeyType string
	// Lifetime asks for a certificate lifetime; zero takes the
	// provisioner's default. The CA enforces its own bounds.
	Lifetime time.Duration
	// HTTPClient supplies the timeout and the base transport (proxy
	// settings) for talking to the CA; its TLS settings are replaced by the
	// pinned root. nil means a 30-second timeout and the default proxy
	// settings.
	HTTPClient *http.Client
	// Getenv reads the CI environment (GitHub's ACTIONS_ID_TOKEN_REQUEST_*,
	// GitLab's id_tokens variable); os.Getenv when nil.
	Getenv func(string) string
	// Logger receives progress at debug and info level; it never sees a
	// token. hclog.NewNullLogger() when nil.
	Logger hclog.Logger
}

// Enroll obtains a client certificate from a smallstep step-ca: it pins the
// CA root by cfg.Fingerprint, generates a key in this process (the key
// never leaves it), sends a certificate request with the one-time token
// (JWK provisioner) or the CI's OIDC token (OIDC provisioner) to
// POST /1.0/sign, and returns the certificate chain with the key, ready for
// New, WriteFiles and a Renewer.
//
// Before a token is spent, Enroll checks what the client can see for
// itself — the fingerprint, that the provisioner exists, the token's
// expiry and audience — so that those mistakes get a precise message
// instead of the CA's generic 401. Errors are *EnrollError (errors.As),
// marked errkind.BadInput, or errkind.Unreachable when the CA cannot be
// reached.
//
// Why net/http and not github.com/smallstep/certificates/ca: the protocol
// is four calls (GET /root/<sha256>, GET /provisioners, POST /1.0/sign,
// POST /1.0/renew) that this file implements with the standard library,
// adding no module. Measured with a tiny main making the same calls (Go
// 1.26, CGO_ENABLED=0, -trimpath, empty GOCACHE, 2 shared cores): with the
// ca package the build compiles 700 packages from 96 modules into a
// 32.8 MB binary in 162 s; the standard-library client compiles 187
// packages from 1 module into 9.1 MB in 84 s (wall times are noisy on the
// shared machine; sizes and counts are exact). go.step.sm/crypto (jose,
// x509util, pemutil) alone would add 17 modules and 2 MB for what
// crypto/x509 does, and its dependencies are not in go.sum. The ca package
// also reads STEP_TLS_TUNNEL in an init function (and panics on a bad
// file), and NewClient loads ~/.step identity files unless told not to:
// surprises in a binary that every CI job builds.
// The tests run the real step-ca server (built from .ci/tools), so the wire
// format is checked against the real thing, not a copy.
func Enroll(ctx context.Context, cfg EnrollConfig) (tls.Certificate, error) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	switch {
	case cfg.Token == "" && cfg.OIDC == "":
		return tls.Certificate{}, badInput(errors.New("enrol with step-ca: no token: pass a one-time token (--token) or --oidc github|gitlab"))
	case cfg.Token != "" && cfg.OIDC != "":
		return tls.Certificate{}, badInput(errors.New("enrol with step-ca: both a token and --oidc given: pass only one"))
	}
	if cfg.OIDC != "" && cfg.OIDC != OIDCGitHub && cfg.OIDC != OIDCGitLab {
		return tls.Certificate{}, badInput(fmt.Errorf("enrol with step-ca: unknown OIDC provider %q: use %q or %q", cfg.OIDC, OIDCGitHub, OIDCGitLab))
	}
	newKey, err := keyGenerator(cfg.KeyType)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := checkOIDCSource(cfg); err != nil {
		return tls.Certificate{}, err
	}
	start := time.Now()
	ca, err := dialCA(ctx, cfg.CAURL, cfg.Fingerprint, cfg.HTTPClient)
	if err != nil {
		return tls.Certificate{}, err
	}
	log.Debug("pinned step-ca root", "ca", ca.base.String(), "root", ca.root.Subject.String())
	provs, err := ca.provisioners(ctx)
	if err != nil {
		return tls.Certificate{}, err
	}

	token := cfg.Token
	if cfg.OIDC != "" {
		aud, err := oidcAudience(ca, provs, cfg)
		if err != nil {
			return tls.Certificate{}, err
		}
		if token, err = oidcToken(ctx, cfg, aud); err != nil {
			return tls.Certificate{}, err
		}
	}
	tok, err := parseToken(token)
	if err != nil {
		return tls.Certificate{}, ca.errorf(ReasonTokenInvalid, err, "the token is not a JWT", "pass the token exactly as the CA or the CI issued it")
	}
	prov, err := ca.checkToken(tok, provs, cfg.Provisioner, time.Now())
	if err != nil {
		return tls.Certificate{}, err
	}

	key, err := newKey()
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("enrol with step-ca: generate key: %w", err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: tok.Subject}}
	if prov.Type == "JWK" {
		// step-ca requires the CSR's names to equal the token's sans (or
		// the subject when sans is absent); OIDC certificates take their
		// names from the provisioner's template instead.
		sans := tok.SANs
		if len(sans) == 0 {
			sans = []string{tok.Subject}
		}
		setSANs(tmpl, sans)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("enrol with step-ca: create certificate request: %w", err)
	}
	chain, err := ca.sign(ctx, csr, token, cfg.Lifetime, prov)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert := tls.Certificate{Certificate: chain, PrivateKey: key}
	if cert.Leaf, err = x509.ParseCertificate(chain[0]); err != nil {
		return tls.Certificate{}, ca.errorf(ReasonOther, err, "the CA returned an unparsable certificate", "check the CA's version and logs")
	}
	if err := ca.verifyClientCert(cert.Leaf, chain[1:]); err != nil {
		return tls.Certificate{}, err
	}
	log.Info("enrolled with step-ca", "ca", ca.base.String(), "provisioner", prov.Name,
		"subject", subjectName(cert.Leaf), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339),
		"serial", cert.Leaf.SerialNumber.String(), "duration", time.Since(start).Round(time.Millisecond))
	return cert, nil
}

// keyGenerator returns the generator for keyType.
func keyGenerator(keyType string) (func() (crypto.Signer, error), error) {
	switch strings.ToLower(keyType) {
	case "", "ecdsa", "ec", "p256", "p-256":
		return func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }, nil
	case "ed25519":
		return func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		}, nil
	case "rsa":
		return func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) }, nil
	}
	return nil, badInput(fmt.Errorf("enrol with step-ca: unknown key type %q: use ecdsa (P-256), ed25519 or rsa", keyType))
}

// setSANs sorts names into the CSR's SAN fields the way step-ca compares
// them: IP addresses, e-mail addresses, URIs, and DNS names.
func setSANs(csr *x509.CertificateRequest, names []string) {
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			csr.IPAddresses = append(csr.IPAddresses, ip)
			continue
		}
		if u, err := url.Parse(n); err == nil && u.Scheme != "" && (u.Host != "" || u.Opaque != "") {
			csr.URIs = append(csr.URIs, u)
			continue
		}
		if _, err := mail.ParseAddress(n); err == nil && strings.Contains(n, "@") {
			csr.EmailAddresses = append(csr.EmailAddresses, n)
			continue
		}
		csr.DNSNames = append(csr.DNSNames, n)
	}
}

// sign posts the CSR and the token to /1.0/sign and returns the chain
// (leaf first) as DER.
func (c *caClient) sign(ctx context.Context, csrDER []byte, token string, lifetime time.Duration, prov provisionerInfo) ([][]byte, error) {
	req := struct {
		CSR      string `json:"csr"`
		OTT      string `json:"ott"`
		NotAfter string `json:"notAfter,omitempty"`
	}{
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		OTT: token,
	}
	if lifetime > 0 {
		req.NotAfter = lifetime.String()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("enrol with step-ca: encode sign request: %w", err)
	}
	var resp signResponse
	status, msg, err := c.post(ctx, c.client, "/1.0/sign", body, &resp)
	if err != nil {
		return nil, err
	}
	if status/100 != 2 {
		return nil, c.signError(status, redact.Value(msg, token), prov)
	}
	return resp.chain()
}

// signError turns a refusal of /1.0/sign into a message with cause and
// fix. step-ca answers every authorization failure with the same generic
// 401 text (details go only to its log), so the checks that the client can
// make itself ran before the token was sent; what is left is named here.
func (c *caClient) signError(status int, msg string, prov provisionerInfo) error {
	cause := fmt.Errorf("HTTP %d: %s", status, msg)
	switch {
	case status == 401 && prov.Type == "OIDC":
		return c.errorf(ReasonTokenRejected, cause,
			fmt.Sprintf("the CA refused the OIDC token for provisioner %q", prov.Name),
			"it was already used, was issued before the CA started, or its issuer, signature or domain does not match the provisioner; the CA's log names which")
	case status == 401:
		return c.errorf(ReasonTokenRejected, cause,
			fmt.Sprintf("the CA refused the one-time token for provisioner %q", prov.Name),
			"it was most likely already used (tokens are single-use) or issued before the CA started; mint a new token with `step ca token` and use it once")
	case status == 403 && strings.Contains(msg, "not allowed"):
		return c.errorf(ReasonNameNotAllowed, cause,
			fmt.Sprintf("a requested name is not allowed by the x509 policy of the CA or of provisioner %q", prov.Name),
			"request only names the policy allows (JWK: the token's sans), or ask the CA operator to allow it")
	case status == 403:
		return c.errorf(ReasonNameNotAllowed, cause,
			fmt.Sprintf("the CA forbade the request for provisioner %q", prov.Name),
			"check the names and lifetime requested against the provisioner's policy and claims")
	case status == 400 && strings.Contains(msg, "duration"):
		return c.errorf(ReasonOther, cause, "the CA refused the requested certificate lifetime",
			"ask for a lifetime within the provisioner's minTLSCertDuration and maxTLSCertDuration, or none")
	case status == 400:
		// A certificate template's `fail` and most policy refusals land here.
		return c.errorf(ReasonNameNotAllowed, cause,
			fmt.Sprintf("the CA's policy or provisioner %q's certificate template refused this identity", prov.Name),
			"enrol from a repository, project or name the template allows, or ask the CA operator to allow it")
	}
	return c.errorf(ReasonOther, cause, "the CA failed to sign", "check the CA's log")
}

// signResponse is the body of a successful /1.0/sign or /1.0/renew.
type signResponse struct {
	Crt       string   `json:"crt"`
	CA        string   `json:"ca"`
	CertChain []string `json:"certChain"`
}

func (r *signResponse) chain() ([][]byte, error) {
	pems := r.CertChain
	if len(pems) == 0 {
		pems = []string{r.Crt, r.CA}
	}
	var chain [][]byte
	for _, p := range pems {
		rest := []byte(p)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				chain = append(chain, b.Bytes)
			}
		}
	}
	if len(chain) == 0 {
		return nil, errors.New("step-ca response holds no certificate")
	}
	return chain, nil
}

// trimBody shortens a response body for an error message.
func trimBody(b []byte) string {
	return redact.Clip(string(bytes.TrimSpace(b)), 300)
}

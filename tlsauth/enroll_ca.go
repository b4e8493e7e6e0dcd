package tlsauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// Reason classifies an enrolment or renewal failure, for callers that
// branch on it (and for tests).
type Reason int

const (
	// ReasonOther is any failure not listed below.
	ReasonOther Reason = iota
	// ReasonBadConfig is a malformed CA URL or fingerprint.
	ReasonBadConfig
	// ReasonFingerprint means the CA has no root with the pinned
	// fingerprint, or its TLS certificate does not chain to that root.
	ReasonFingerprint
	// ReasonUnreachable means the CA could not be reached (DNS, TCP, TLS
	// handshake, timeout).
	ReasonUnreachable
	// ReasonUnknownProvisioner means no provisioner of the CA matches the
	// name given or the token.
	ReasonUnknownProvisioner
	// ReasonTokenInvalid is a token that is not a JWT.
	ReasonTokenInvalid
	// ReasonTokenExpired is a token past its exp (or before its nbf).
	ReasonTokenExpired
	// ReasonTokenAudience is a token whose aud the CA does not accept.
	ReasonTokenAudience
	// ReasonTokenRejected is a token the CA refused for a reason it does not
	// tell clients: already used, issued before the CA started, or a
	// signature that does not verify.
	ReasonTokenRejected
	// ReasonTokenSource means the CI could not provide an OIDC token.
	ReasonTokenSource
	// ReasonNameNotAllowed means the provisioner's policy forbids a
	// requested name.
	ReasonNameNotAllowed
	// ReasonRenewRefused means the CA refused to renew the certificate
	// (expired, revoked, or renewal disabled for its provisioner).
	ReasonRenewRefused
)

// EnrollError is an enrolment or renewal failure: what happened, at which
// CA, and what to do about it. It never holds a token.
type EnrollError struct {
	// Reason classifies the failure.
	Reason Reason
	// CAURL is the CA's base URL.
	CAURL string
	// Problem says what went wrong; Fix says what to do.
	Problem, Fix string
	// Err is the underlying cause, if any.
	Err error
}

func (e *EnrollError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "step-ca %s: %s", e.CAURL, e.Problem)
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	if e.Fix != "" {
		fmt.Fprintf(&b, ": %s", e.Fix)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *EnrollError) Unwrap() error { return e.Err }

// newEnrollError returns an EnrollError marked with the errkind its reason
// implies.
func newEnrollError(reason Reason, caURL string, cause error, problem, fix string) error {
	e := &EnrollError{Reason: reason, CAURL: caURL, Problem: problem, Fix: fix, Err: cause}
	switch reason {
	case ReasonUnreachable:
		return errkind.Mark(errkind.Unreachable, e)
	case ReasonOther:
		return e
	}
	return errkind.Mark(errkind.BadInput, e)
}

func badInput(err error) error { return errkind.Mark(errkind.BadInput, err) }

// caClient talks to one step-ca whose root is pinned.
type caClient struct {
	base   *url.URL
	root   *x509.Certificate
	roots  *x509.CertPool
	client *http.Client // verifies the CA against the pinned root
	hc     *http.Client // the caller's client: timeout and base transport
	// hosts are the names the CA's TLS certificate covers: its dnsNames,
	// each of which a token's audience may use.
	hosts []string
}

func (c *caClient) errorf(reason Reason, cause error, problem, fix string) error {
	return newEnrollError(reason, c.base.String(), cause, problem, fix)
}

// normalizeFingerprint returns fp as 64 lower-case hex digits.
func normalizeFingerprint(fp string) (string, error) {
	fp = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(fp), ":", ""))
	if b, err := hex.DecodeString(fp); err != nil || len(b) != sha256.Size {
		return "", errors.New("--ca-fingerprint must be the SHA-256 of the CA root as 64 hex digits: print it on the CA with `step certificate fingerprint $(step path)/certs/root_ca.crt`")
	}
	return fp, nil
}

// parseCAURL checks that raw is an https base URL.
func parseCAURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(strings.TrimSpace(raw), "/"))
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--ca-url %q must be the step-ca's https URL, for example https://ca.example.com:9000", raw)
	}
	return u, nil
}

// transportFrom returns a transport with hc's base settings (or the
// defaults) and tlsConfig.
func transportFrom(hc *http.Client, tlsConfig *tls.Config) *http.Transport {
	var t *http.Transport
	if hc != nil {
		if base, ok := hc.Transport.(*http.Transport); ok {
			t = base.Clone()
		}
	}
	if t == nil {
		t = http.DefaultTransport.(*http.Transport).Clone()
	}
	t.TLSClientConfig = tlsConfig
	return t
}

func clientTimeout(hc *http.Client) time.Duration {
	if hc != nil && hc.Timeout > 0 {
		return hc.Timeout
	}
	return 30 * time.Second
}

// dialCA fetches the root whose SHA-256 is fingerprint from the CA at
// caURL and returns a client that trusts only that root.
//
// The first request, GET /root/<fingerprint>, cannot verify the server yet:
// the root is what it fetches. It sends nothing secret, and what it
// returns is self-authenticating: the certificate must hash to the pinned
// fingerprint, and the server's own chain must verify against it, before
// anything else is sent. This is how step's own bootstrap works; there is no
// trust on first use and no way to skip the pin.
func dialCA(ctx context.Context, caURL, fingerprint string, hc *http.Client) (*caClient, error) {
	base, err := parseCAURL(caURL)
	if err != nil {
		return nil, newEnrollError(ReasonBadConfig, caURL, nil, "bad CA URL", err.Error())
	}
	fp, err := normalizeFingerprint(fingerprint)
	if err != nil {
		return nil, newEnrollError(ReasonBadConfig, base.String(), nil, "bad root fingerprint", err.Error())
	}
	c := &caClient{base: base, hc: hc}

	boot := &http.Client{
		Timeout: clientTimeout(hc),
		Transport: transportFrom(hc, &tls.Config{
			MinVersion: tls.VersionTLS12,
			// Verified below, by fingerprint, before anything is trusted
			// or sent (see the function comment).
			InsecureSkipVerify: true, //nolint:gosec // pinned by fingerprint below
		}),
	}
	defer boot.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.JoinPath("root", fp).String(), nil)
	if err != nil {
		return nil, c.errorf(ReasonBadConfig, err, "bad CA URL", "pass the step-ca's https URL")
	}
	resp, err := boot.Do(req)
	if err != nil {
		return nil, c.unreachable(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, c.unreachable(err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, c.errorf(ReasonFingerprint, nil,
			fmt.Sprintf("the CA has no root certificate with SHA-256 fingerprint %s", fp),
			"check --ca-fingerprint: print the right one on the CA with `step certificate fingerprint $(step path)/certs/root_ca.crt`, and check that --ca-url is that CA")
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.errorf(ReasonOther, fmt.Errorf("HTTP %d: %s", resp.StatusCode, trimBody(body)),
			"GET /root failed", "check that --ca-url points at a step-ca")
	}
	var rootResp struct {
		CA string `json:"ca"`
	}
	if err := json.Unmarshal(body, &rootResp); err != nil {
		return nil, c.errorf(ReasonOther, err, "GET /root returned no root certificate", "check that --ca-url points at a step-ca")
	}
	blk, _ := pem.Decode([]byte(rootResp.CA))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, c.errorf(ReasonOther, nil, "GET /root returned no PEM certificate", "check that --ca-url points at a step-ca")
	}
	sum := sha256.Sum256(blk.Bytes)
	if got := hex.EncodeToString(sum[:]); got != fp {
		return nil, c.errorf(ReasonFingerprint, nil,
			fmt.Sprintf("the root the CA sent has fingerprint %s, not the pinned %s", got, fp),
			"something between you and the CA is answering for it, or --ca-url is another CA: check both")
	}
	if c.root, err = x509.ParseCertificate(blk.Bytes); err != nil {
		return nil, c.errorf(ReasonOther, err, "the CA's root does not parse", "check the CA")
	}
	c.roots = x509.NewCertPool()
	c.roots.AddCert(c.root)
	if err := c.verifyServer(resp.TLS); err != nil {
		return nil, err
	}
	c.client = &http.Client{
		Timeout:   clientTimeout(hc),
		Transport: transportFrom(hc, &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.roots}),
	}
	return c, nil
}

// verifyServer checks that the server of the bootstrap connection chains to
// the pinned root for the CA's host name.
func (c *caClient) verifyServer(cs *tls.ConnectionState) error {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return c.errorf(ReasonFingerprint, nil, "the CA presented no TLS certificate", "check --ca-url")
	}
	inter := x509.NewCertPool()
	for _, ic := range cs.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName:       c.base.Hostname(),
		Roots:         c.roots,
		Intermediates: inter,
	})
	if err != nil {
		return c.errorf(ReasonFingerprint, err,
			"the CA's TLS certificate does not verify against the pinned root",
			"check --ca-url (the host name must be one of the CA's dnsNames) and --ca-fingerprint")
	}
	leaf := cs.PeerCertificates[0]
	c.hosts = append(c.hosts, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		c.hosts = append(c.hosts, ip.String())
	}
	return nil
}

// verifyClientCert checks that an issued leaf chains to the pinned root.
func (c *caClient) verifyClientCert(leaf *x509.Certificate, rest [][]byte) error {
	inter := x509.NewCertPool()
	for _, der := range rest {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         c.roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return c.errorf(ReasonOther, err, "the issued certificate does not verify as a client certificate under the pinned root",
			"check the provisioner's template: it must include the clientAuth extended key usage")
	}
	return nil
}

func (c *caClient) unreachable(err error) error {
	return c.errorf(ReasonUnreachable, err, "the CA is unreachable",
		"check --ca-url, DNS, the network path and any proxy; `goproxy-setup diagnose` against the CA URL names the failing layer")
}

// post sends body to path and decodes a 2xx answer into out. It returns the
// status and, for other statuses, the CA's error message.
func (c *caClient) post(ctx context.Context, client *http.Client, path string, body []byte, out any) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		return 0, "", c.errorf(ReasonBadConfig, err, "bad CA URL", "pass the step-ca's https URL")
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", c.unreachable(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", c.unreachable(err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return resp.StatusCode, e.Message, nil
		}
		return resp.StatusCode, trimBody(b), nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, "", c.errorf(ReasonOther, err, "the CA's answer to "+path+" does not decode", "check that --ca-url points at a step-ca")
	}
	return resp.StatusCode, "", nil
}

// provisionerInfo is the public part of a provisioner, from GET
// /provisioners.
type provisionerInfo struct {
	Type     string `json:"type"`
	Name     string `json:"name"`
	ClientID string `json:"clientID"`
	Key      struct {
		KID string `json:"kid"`
	} `json:"key"`
}

func (p provisionerInfo) String() string {
	if p.Type == "OIDC" {
		return fmt.Sprintf("%s (OIDC, clientID %s)", p.Name, p.ClientID)
	}
	return fmt.Sprintf("%s (%s)", p.Name, p.Type)
}

// provisioners lists the CA's provisioners (a public endpoint).
func (c *caClient) provisioners(ctx context.Context) ([]provisionerInfo, error) {
	var all []provisionerInfo
	cursor := ""
	for range 50 {
		u := c.base.JoinPath("provisioners")
		q := url.Values{"limit": {"100"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		u.RawQuery = q.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, c.errorf(ReasonBadConfig, err, "bad CA URL", "pass the step-ca's https URL")
		}
		resp, err := c.client.Do(req)
		if err != nil {
			return nil, c.unreachable(err)
		}
		var page struct {
			Provisioners []provisionerInfo `json:"provisioners"`
			NextCursor   string            `json:"nextCursor"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			return nil, c.errorf(ReasonOther, fmt.Errorf("HTTP %d, %v", resp.StatusCode, err), "GET /provisioners failed", "check that --ca-url points at a step-ca")
		}
		all = append(all, page.Provisioners...)
		if page.NextCursor == "" || len(page.Provisioners) == 0 {
			break
		}
		cursor = page.NextCursor
	}
	return all, nil
}

func provisionerNames(provs []provisionerInfo) string {
	s := make([]string, 0, len(provs))
	for _, p := range provs {
		s = append(s, p.String())
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// tokenClaims are the parts of a JWT that the client checks before
// spending it. They are read without verifying the signature: the CA
// verifies it; these checks only give better messages.
type tokenClaims struct {
	KID      string
	Issuer   string       `json:"iss"`
	Subject  string       `json:"sub"`
	Audience audience     `json:"aud"`
	Expiry   *json.Number `json:"exp"`
	NotBef   *json.Number `json:"nbf"`
	SANs     []string     `json:"sans"`
	AZP      string       `json:"azp"`
}

// audience is a JWT aud: a string or a list of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("aud is neither a string nor a list of strings")
	}
	*a = l
	return nil
}

// parseToken decodes a compact JWS without verifying it. Its errors never
// contain the token.
func parseToken(tok string) (*tokenClaims, error) {
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("a JWT has 3 dot-separated parts, this has %d", len(parts))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, errors.New("the JWT header is not base64url")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("the JWT payload is not base64url")
	}
	var hdr struct {
		KID string `json:"kid"`
	}
	if json.Unmarshal(hb, &hdr) != nil {
		return nil, errors.New("the JWT header is not JSON")
	}
	var c tokenClaims
	d := json.NewDecoder(bytes.NewReader(pb))
	d.UseNumber()
	if err := d.Decode(&c); err != nil {
		return nil, errors.New("the JWT claims are not JSON with the registered claim types")
	}
	c.KID = hdr.KID
	return &c, nil
}

func numericTime(n *json.Number) (time.Time, bool) {
	if n == nil {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// tokenLeeway is the clock skew step-ca tolerates on exp and nbf.
const tokenLeeway = time.Minute

// checkToken finds the provisioner the token is meant for and checks what
// the client can check itself: that provisioner exists (and is the one
// asked for), the token's lifetime and its audience.
func (c *caClient) checkToken(tok *tokenClaims, provs []provisionerInfo, want string, now time.Time) (provisionerInfo, error) {
	if want != "" && !slices.ContainsFunc(provs, func(p provisionerInfo) bool { return p.Name == want }) {
		return provisionerInfo{}, c.errorf(ReasonUnknownProvisioner, nil,
			fmt.Sprintf("the CA has no provisioner named %q", want),
			"pass one of its provisioners to --provisioner: "+provisionerNames(provs))
	}
	var prov provisionerInfo
	found := false
	// JWK tokens: iss is the provisioner's name, kid its key.
	for _, p := range provs {
		if p.Type == "JWK" && p.Name == tok.Issuer {
			prov, found = p, true
			if p.Key.KID != tok.KID {
				return prov, c.errorf(ReasonUnknownProvisioner, nil,
					fmt.Sprintf("the token names JWK provisioner %q but was signed with key %q, which is not that provisioner's (%q)", p.Name, tok.KID, p.Key.KID),
					"mint the token with that provisioner's key: `step ca token --provisioner "+p.Name+"`")
			}
			break
		}
	}
	if !found {
		// OIDC tokens: aud (or azp) is the provisioner's clientID.
		for _, p := range provs {
			if p.Type == "OIDC" && (slices.Contains(tok.Audience, p.ClientID) || tok.AZP == p.ClientID) {
				prov, found = p, true
				break
			}
		}
	}
	if !found {
		if looksLikeStepToken(tok) {
			return prov, c.errorf(ReasonUnknownProvisioner, nil,
				fmt.Sprintf("the token's issuer %q names no JWK provisioner of this CA", tok.Issuer),
				"mint the token with one of its provisioners ("+provisionerNames(provs)+"), or check --ca-url")
		}
		return prov, c.errorf(ReasonTokenAudience, nil,
			fmt.Sprintf("the OIDC token's audience %q matches the clientID of no OIDC provisioner of this CA", []string(tok.Audience)),
			"set --oidc-audience (GitHub) or the id_tokens aud (GitLab) to the clientID of the provisioner: "+provisionerNames(provs))
	}
	if want != "" && prov.Name != want {
		return prov, c.errorf(ReasonUnknownProvisioner, nil,
			fmt.Sprintf("the token is for provisioner %q, not %q", prov.Name, want),
			"pass a token from provisioner "+want+", or drop --provisioner")
	}
	if exp, ok := numericTime(tok.Expiry); ok && now.After(exp.Add(tokenLeeway)) {
		return prov, c.errorf(ReasonTokenExpired, nil,
			fmt.Sprintf("the token expired at %s (%s ago)", exp.UTC().Format(time.RFC3339), now.Sub(exp).Round(time.Second)),
			"mint a new token right before the job (one-time tokens live minutes) and check this machine's clock")
	}
	if nbf, ok := numericTime(tok.NotBef); ok && now.Add(tokenLeeway).Before(nbf) {
		return prov, c.errorf(ReasonTokenExpired, nil,
			fmt.Sprintf("the token is not valid before %s", nbf.UTC().Format(time.RFC3339)),
			"check this machine's clock against the token issuer's")
	}
	if prov.Type == "JWK" && !c.signAudience(tok.Audience) {
		return prov, c.errorf(ReasonTokenAudience, nil,
			fmt.Sprintf("the token's audience %q is not this CA's sign endpoint %s", []string(tok.Audience), c.base.JoinPath("1.0", "sign")),
			"mint the token for this CA: `step ca token --ca-url "+c.base.String()+"`")
	}
	return prov, nil
}

// looksLikeStepToken reports whether tok is shaped like a step JWK token
// (aud is a CA sign URL) rather than a third-party OIDC token.
func looksLikeStepToken(tok *tokenClaims) bool {
	for _, a := range tok.Audience {
		if strings.HasSuffix(a, "/sign") {
			return true
		}
	}
	return len(tok.SANs) > 0
}

// signAudience reports whether aud holds this CA's sign endpoint under one
// of its names. step-ca compares host names without ports.
func (c *caClient) signAudience(aud []string) bool {
	hosts := append([]string{c.base.Hostname()}, c.hosts...)
	for _, a := range aud {
		u, err := url.Parse(a)
		if err != nil || (u.Path != "/1.0/sign" && u.Path != "/sign") {
			continue
		}
		if slices.ContainsFunc(hosts, func(h string) bool { return strings.EqualFold(h, u.Hostname()) }) {
			return true
		}
	}
	return false
}

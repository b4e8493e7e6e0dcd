package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// OIDCIssuer is an OpenID Connect issuer on loopback: it serves the
// discovery document and the JWKS at URL and signs ID tokens whose iss is
// Issuer (a public-looking https URL, as GitHub's and GitLab's are; step-ca
// only compares it with the discovery document, which it fetches from URL).
type OIDCIssuer struct {
	// Issuer is the iss claim of the tokens and of the discovery document.
	Issuer string
	// URL is the loopback base URL serving /.well-known/openid-configuration.
	URL string
	// Provisioner and ClientID name the step-ca OIDC provisioner that
	// trusts this issuer; ClientID is the audience tokens need.
	Provisioner, ClientID string

	key *jwsKey
}

// StartOIDCIssuer starts an issuer on 127.0.0.1 for the step-ca OIDC
// provisioner prov with clientID. It stops when the test ends.
func StartOIDCIssuer(t testing.TB, issuer, prov, clientID string) *OIDCIssuer {
	t.Helper()
	o := &OIDCIssuer{Issuer: issuer, Provisioner: prov, ClientID: clientID, key: newJWSKey(t)}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	o.URL = srv.URL
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                o.Issuer,
			"jwks_uri":                              o.URL + "/.well-known/jwks",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
			"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss"},
		})
	})
	mux.HandleFunc("GET /.well-known/jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"keys": []any{o.key.publicJWK()}})
	})
	return o
}

func (o *OIDCIssuer) provisioner(template string) map[string]any {
	p := map[string]any{
		"type":                  "OIDC",
		"name":                  o.Provisioner,
		"clientID":              o.ClientID,
		"clientSecret":          "",
		"configurationEndpoint": o.URL + "/.well-known/openid-configuration",
	}
	if template != "" {
		p["options"] = map[string]any{"x509": map[string]any{"template": template}}
	}
	return p
}

// Token signs an ID token with claims over defaults: iss, aud (ClientID),
// iat, nbf, exp (five minutes), jti. Set "aud" or "exp" to override them.
func (o *OIDCIssuer) Token(t testing.TB, claims map[string]any) string {
	t.Helper()
	now := tokenNow()
	c := map[string]any{
		"iss": o.Issuer,
		"aud": o.ClientID,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
		"jti": randomHex(t, 16),
	}
	for k, v := range claims {
		c[k] = v
	}
	return o.key.sign(t, c)
}

// GitHubClaims are the claims of a GitHub Actions ID token for a push to
// main of octo-org/octo-repo.
func GitHubClaims() map[string]any {
	return map[string]any{
		"sub":                   "repo:octo-org/octo-repo:ref:refs/heads/main",
		"repository":            "octo-org/octo-repo",
		"repository_owner":      "octo-org",
		"ref":                   "refs/heads/main",
		"ref_type":              "branch",
		"sha":                   "example-sha",
		"workflow":              "ci",
		"job_workflow_ref":      "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main",
		"event_name":            "push",
		"actor":                 "octocat",
		"run_id":                "1",
		"runner_environment":    "github-hosted",
		"repository_visibility": "private",
	}
}

// GitLabClaims are the claims of a GitLab CI id_token for a pipeline on
// main of group/project.
func GitLabClaims() map[string]any {
	return map[string]any{
		"sub":                "project_path:group/project:ref_type:branch:ref:main",
		"namespace_path":     "group",
		"project_path":       "group/project",
		"user_login":         "someone",
		"pipeline_id":        "1",
		"pipeline_source":    "push",
		"job_id":             "1",
		"ref":                "main",
		"ref_type":           "branch",
		"ref_protected":      "true",
		"runner_environment": "self-hosted",
	}
}

// ActionsTokenEndpoint simulates the GitHub runner's ID-token endpoint on
// loopback: it returns the values of ACTIONS_ID_TOKEN_REQUEST_URL and
// ACTIONS_ID_TOKEN_REQUEST_TOKEN. A GET with the bearer request token and
// ?audience=A answers {"value": <GitHub-shaped token with aud A>}; the
// audience defaults to "https://github.com/<owner>" as on GitHub.
func (o *OIDCIssuer) ActionsTokenEndpoint(t testing.TB) (requestURL, requestToken string) {
	t.Helper()
	requestToken = "request-" + randomHex(t, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+requestToken {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		aud := r.URL.Query().Get("audience")
		if aud == "" {
			aud = "https://github.com/octo-org"
		}
		c := GitHubClaims()
		c["aud"] = aud
		writeJSON(w, map[string]any{"count": 1, "value": o.Token(t, c)})
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/_apis/distributedtask/hubs/build/plans/1/jobs/1/idtoken?api-version=2.0", requestToken
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// jwsKey is an ES256 signing key for compact JWS tokens, with its public
// JWK (kid = RFC 7638 thumbprint).
type jwsKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

func newJWSKey(t testing.TB) *jwsKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: generate JWK: %v", err)
	}
	k := &jwsKey{priv: priv}
	x, y := k.coords()
	thumb := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	k.kid = b64(thumb[:])
	return k
}

func (k *jwsKey) coords() (x, y string) {
	pub, err := k.priv.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err) // a P-256 key always encodes
	}
	return b64(pub[1:33]), b64(pub[33:])
}

func (k *jwsKey) publicJWK() map[string]any {
	x, y := k.coords()
	return map[string]any{"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": k.kid, "use": "sig", "alg": "ES256"}
}

func (k *jwsKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	hdr, err := json.Marshal(map[string]any{"alg": "ES256", "kid": k.kid, "typ": "JWT"})
	if err != nil {
		t.Fatalf("testenv: token header: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("testenv: token claims: %v", err)
	}
	input := b64(hdr) + "." + b64(payload)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, sum[:])
	if err != nil {
		t.Fatalf("testenv: sign token: %v", err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

package tlsauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sethvargo/go-githubactions"
)

// OIDC token sources for EnrollConfig.OIDC.
const (
	// OIDCGitHub requests an ID token from the GitHub Actions runner
	// (ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN,
	// present when the job has `permissions: id-token: write`).
	OIDCGitHub = "github"
	// OIDCGitLab reads a GitLab CI id_tokens variable.
	OIDCGitLab = "gitlab"
)

// DefaultGitLabTokenVar is the id_tokens variable read for GitLab when
// EnrollConfig.GitLabTokenVar is empty:
//
//	id_tokens:
//	  GOPROXY_SETUP_ID_TOKEN:
//	    aud: <the OIDC provisioner's clientID>
const DefaultGitLabTokenVar = "GOPROXY_SETUP_ID_TOKEN"

// oidcAudience picks the audience to request: the configured one, or the
// clientID of the named provisioner, or of the CA's only OIDC provisioner.
func oidcAudience(ca *caClient, provs []provisionerInfo, cfg EnrollConfig) (string, error) {
	if cfg.Audience != "" {
		return cfg.Audience, nil
	}
	var oidc []provisionerInfo
	for _, p := range provs {
		if p.Type != "OIDC" {
			continue
		}
		if cfg.Provisioner != "" && p.Name == cfg.Provisioner {
			return p.ClientID, nil
		}
		oidc = append(oidc, p)
	}
	switch {
	case cfg.Provisioner != "":
		return "", ca.errorf(ReasonUnknownProvisioner, nil,
			fmt.Sprintf("the CA has no OIDC provisioner named %q", cfg.Provisioner),
			"pass one of its provisioners to --provisioner: "+provisionerNames(provs))
	case len(oidc) == 1:
		return oidc[0].ClientID, nil
	case cfg.OIDC == OIDCGitLab:
		return "", nil // the token is minted already; checkToken matches its aud
	case len(oidc) == 0:
		return "", ca.errorf(ReasonUnknownProvisioner, nil, "the CA has no OIDC provisioner",
			"add one for the CI's issuer (see examples/step-ca), or enrol with a one-time token (--token)")
	}
	return "", ca.errorf(ReasonTokenAudience, nil, "the CA has several OIDC provisioners and no audience was given",
		"pass --provisioner or --oidc-audience (the provisioner's clientID); provisioners: "+provisionerNames(provs))
}

// oidcToken obtains the CI's ID token for audience. Errors never contain a
// token.
func oidcToken(ctx context.Context, cfg EnrollConfig, audience string) (string, error) {
	switch cfg.OIDC {
	case OIDCGitHub:
		return githubToken(ctx, cfg, audience)
	case OIDCGitLab:
		return gitlabToken(cfg, audience)
	}
	return "", badInput(fmt.Errorf("unknown OIDC provider %q: use %q or %q", cfg.OIDC, OIDCGitHub, OIDCGitLab))
}

func tokenSourceError(cfg EnrollConfig, cause error, problem, fix string) error {
	return newEnrollError(ReasonTokenSource, strings.TrimRight(cfg.CAURL, "/"), cause, problem, fix)
}

// checkOIDCSource fails fast, before the CA is contacted, when the CI
// environment cannot provide a token at all.
func checkOIDCSource(cfg EnrollConfig) error {
	switch cfg.OIDC {
	case OIDCGitHub:
		return githubEnv(cfg)
	case OIDCGitLab:
		_, err := gitlabEnv(cfg, "")
		return err
	}
	return nil
}

const githubFix = "give the job `permissions: id-token: write` (GitHub sets ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN only then), or use --token"

func githubEnv(cfg EnrollConfig) error {
	reqURL := cfg.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL")
	if reqURL == "" {
		return tokenSourceError(cfg, nil, "no GitHub ID token: ACTIONS_ID_TOKEN_REQUEST_URL is not set", githubFix)
	}
	if cfg.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN") == "" {
		return tokenSourceError(cfg, nil, "no GitHub ID token: ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set", githubFix)
	}
	if u, err := url.Parse(reqURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return tokenSourceError(cfg, nil, "no GitHub ID token: ACTIONS_ID_TOKEN_REQUEST_URL is not an http(s) URL", githubFix)
	}
	return nil
}

// githubToken requests an ID token from the runner. go-githubactions does
// the request; the environment is validated here first so that a job
// without id-token permission (or a run outside GitHub) gets a precise
// message, and a panic in the library cannot take the process down.
func githubToken(ctx context.Context, cfg EnrollConfig, audience string) (tok string, err error) {
	if err := githubEnv(cfg); err != nil {
		return "", err
	}
	hc := &http.Client{Timeout: clientTimeout(cfg.HTTPClient), Transport: transportFrom(cfg.HTTPClient, nil)}
	action := githubactions.New(
		githubactions.WithGetenv(cfg.Getenv),
		githubactions.WithHTTPClient(hc),
		githubactions.WithWriter(io.Discard),
	)
	defer func() {
		if r := recover(); r != nil {
			tok, err = "", tokenSourceError(cfg, fmt.Errorf("panic: %v", r), "requesting the GitHub ID token failed", githubFix)
		}
	}()
	tok, err = action.GetIDToken(ctx, audience)
	if err != nil {
		return "", tokenSourceError(cfg, err, fmt.Sprintf("requesting the GitHub ID token (audience %q) failed", audience),
			"check that the job has `permissions: id-token: write` and that the runner can reach its token service")
	}
	if tok == "" {
		return "", tokenSourceError(cfg, nil, "the GitHub token service returned an empty ID token", "retry the job; check GitHub's status")
	}
	return tok, nil
}

// gitlabToken reads the id_tokens variable and, when an audience is known,
// checks it before the token is spent.
func gitlabToken(cfg EnrollConfig, audience string) (string, error) {
	return gitlabEnv(cfg, audience)
}

func gitlabEnv(cfg EnrollConfig, audience string) (string, error) {
	name := cfg.GitLabTokenVar
	if name == "" {
		name = DefaultGitLabTokenVar
	}
	aud := audience
	if aud == "" {
		aud = "<the OIDC provisioner's clientID>"
	}
	tok := strings.TrimSpace(cfg.Getenv(name))
	if tok == "" {
		return "", tokenSourceError(cfg, nil, fmt.Sprintf("no GitLab ID token: variable %s is empty", name),
			fmt.Sprintf("add to the job `id_tokens: {%s: {aud: %s}}` (GitLab 15.7+), or name your variable with GOPROXY_SETUP_OIDC_TOKEN_VAR", name, aud))
	}
	if audience != "" {
		c, err := parseToken(tok)
		if err != nil {
			return "", tokenSourceError(cfg, err, fmt.Sprintf("variable %s does not hold a JWT", name), "fill it from the job's id_tokens")
		}
		found := false
		for _, a := range c.Audience {
			found = found || a == audience
		}
		if !found {
			return "", newEnrollError(ReasonTokenAudience, strings.TrimRight(cfg.CAURL, "/"), nil,
				fmt.Sprintf("the GitLab ID token in %s has audience %q, the CA's provisioner expects %q", name, []string(c.Audience), audience),
				fmt.Sprintf("set `id_tokens: {%s: {aud: %s}}` in the job", name, audience))
		}
	}
	return tok, nil
}

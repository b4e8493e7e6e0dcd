// Package policies owns the policy: which upstreams serve which modules,
// which modules may be fetched at all, how the checksum database is used,
// whether cmd/go may fetch directly, retries, the circuit breaker,
// privilege separation, warm defaults and the environment exported to the
// job. It parses and validates the HCL policy file (errors as
// file:line:col with the offending snippet), supplies the built-in
// defaults that equal the behaviour without a file, and renders the
// effective policy with secrets redacted. The schema is documented in
// policies/README.md; default.hcl, strict.hcl and private-modules.hcl in
// this directory are examples.
//
// The package only describes policy; agent/upstream, agent/proxy and
// agent/warm enforce it.
package policies

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
)

// Fallthrough says when a request moves on from an upstream to the next
// one in its list, as cmd/go's GOPROXY separators do.
type Fallthrough int

const (
	// FallthroughNotFound moves on only when the upstream answers 404 or
	// 410 (cmd/go's ",").
	FallthroughNotFound Fallthrough = iota
	// FallthroughAny moves on after any error: a status, a timeout, a
	// refused connection or a TLS failure (cmd/go's "|").
	FallthroughAny
)

// String returns the policy spelling: "404" or "any".
func (f Fallthrough) String() string {
	if f == FallthroughAny {
		return "any"
	}
	return "404"
}

// Separator returns the cmd/go GOPROXY separator with the same meaning:
// "," or "|".
func (f Fallthrough) Separator() string {
	if f == FallthroughAny {
		return "|"
	}
	return ","
}

// Secret is a value that must never be printed. Its String and GoString
// methods return "(redacted)", so fmt, loggers and %v/%s/%q/%#v never show
// it; Reveal returns the value for the one place that sends it.
type Secret string

// Redacted is what a Secret prints as.
const Redacted = "(redacted)"

// String returns "(redacted)".
func (Secret) String() string { return Redacted }

// GoString returns "(redacted)".
func (Secret) GoString() string { return Redacted }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// Upstream is one module proxy the agent forwards to.
type Upstream struct {
	// Name is the upstream's label in the policy ("internal", "public").
	Name string
	// URL is the GOPROXY base URL without a trailing slash: https, or
	// http on a loopback address only.
	URL string
	// ClientCert and ClientKey are PEM files with the client certificate
	// (and chain) and its key presented to this upstream, or both empty.
	// Relative paths in a policy file are resolved against the file's
	// directory.
	ClientCert, ClientKey string
	// CACert is a PEM file with extra roots for this upstream's server
	// certificate, or empty for the system roots.
	CACert string
	// SPKIPins, when not empty, restrict the server chain to one holding a
	// public key whose SHA-256 SubjectPublicKeyInfo hash is listed
	// ("sha256/<base64>").
	SPKIPins []string
	// Token is a bearer token sent to this upstream only, or empty.
	// Prefer TokenEnv: an inline token lives in the policy file.
	Token Secret
	// TokenEnv names the environment variable that holds the bearer
	// token, or is empty.
	TokenEnv string
	// Username and Password are basic authentication for this upstream,
	// from user info in an --upstream URL (a policy file refuses them: use
	// token_env there). URL never holds them; Show never prints the
	// password.
	Username string
	Password Secret
	// Timeout bounds one fetch from this upstream, headers and body.
	Timeout time.Duration
	// ConnectTimeout bounds the TCP connect and TLS handshake.
	ConnectTimeout time.Duration
	// Fallthrough says when a request moves on to the next upstream in
	// the list.
	Fallthrough Fallthrough
	// MinTLSVersion is tls.VersionTLS12 or tls.VersionTLS13; nothing
	// lower can be set.
	MinTLSVersion uint16
}

// BasicAuth reports whether the upstream has basic authentication.
func (u *Upstream) BasicAuth() bool { return u.Username != "" || u.Password != "" }

// HostPort returns the upstream's host:port, with the scheme's default port
// when the URL has none.
func (u *Upstream) HostPort() string {
	pu, err := url.Parse(u.URL)
	if err != nil || pu.Host == "" {
		return ""
	}
	if pu.Port() != "" {
		return pu.Host
	}
	port := "443"
	if pu.Scheme == "http" {
		port = "80"
	}
	return net.JoinHostPort(pu.Hostname(), port)
}

// Route is the ordered upstream list that serves a set of modules.
type Route struct {
	// Modules are the module path patterns (cmd/go GOPRIVATE glob
	// syntax) this route serves; nil for the default route.
	Modules []string
	// Upstreams are tried in order; each one's Fallthrough says when the
	// next is tried.
	Upstreams []*Upstream
	// Private routes serve modules whose names must never reach a public
	// checksum database: their patterns make up GONOSUMDB.
	Private bool
}

// List returns the route's upstreams in cmd/go's GOPROXY syntax, e.g.
// "https://a.example|https://b.example", for display: it holds no basic
// authentication (see Upstream.Username).
func (r Route) List() string {
	var b strings.Builder
	for i, u := range r.Upstreams {
		if i > 0 {
			b.WriteString(r.Upstreams[i-1].Fallthrough.Separator())
		}
		b.WriteString(u.URL)
	}
	return b.String()
}

func (r Route) matches(modulePath string) bool {
	return module.MatchPrefixPatterns(strings.Join(r.Modules, ","), modulePath)
}

// Rule is an allow or deny rule. Rules are checked in policy order and the
// first rule whose patterns match decides.
type Rule struct {
	// Allow is true for an allow rule, false for a deny rule.
	Allow bool
	// Modules are the module path patterns (cmd/go GOPRIVATE glob syntax).
	Modules []string
	// Reason is the message a denied request gets (deny rules only).
	Reason string
}

// SumDB is the checksum database configuration.
type SumDB struct {
	// Enabled is false to turn checksum database verification off
	// (GOSUMDB=off).
	Enabled bool
	// Name is the database name, "sum.golang.org" by default.
	Name string
	// Key is the verifier key ("name+hash+key") for a database other than
	// the ones cmd/go knows; empty for those.
	Key string
	// URL is where the agent reaches the database; empty means through
	// the serving upstream's /sumdb/<name>/ endpoint.
	URL string
	// Private are patterns never looked up in the database in addition to
	// the patterns of the private routes (see Policy.PrivatePatterns).
	Private []string
}

// Direct says whether cmd/go may fetch modules directly from their origin
// (version control) when the agent does not have them.
type Direct struct {
	// Allowed appends ",direct" to the exported GOPROXY.
	Allowed bool
}

// Retry is the agent's retry policy for idempotent upstream requests.
type Retry struct {
	// Attempts is the total number of tries, at least 1 (no retry).
	Attempts int
	// Backoff is the first delay; it doubles per attempt, with jitter.
	Backoff time.Duration
	// MaxBackoff caps the delay.
	MaxBackoff time.Duration
}

// CircuitBreaker opens an upstream's circuit after consecutive failures.
type CircuitBreaker struct {
	// Failures is the number of consecutive failures that open the
	// circuit; 0 disables the breaker.
	Failures int
	// Cooldown is how long an open circuit stays open before a probe.
	Cooldown time.Duration
}

// Privilege is the privilege separation policy for the agent.
type Privilege struct {
	// RequireSeparation makes it an error when the agent cannot run as the
	// dedicated user (for example, the job has no root).
	RequireSeparation bool
	// User is the dedicated unprivileged user's name.
	User string
	// UID is the user's numeric id when it is created; 0 lets the system
	// choose.
	UID int
}

// Warm is the warm step's defaults.
type Warm struct {
	// Enabled runs the warm step.
	Enabled bool
	// Concurrency is the number of parallel fetches; 0 chooses.
	Concurrency int
	// Extract also extracts each zip into GOMODCACHE as cmd/go does, not
	// only cache/download.
	Extract bool
}

// Env is what the policy adds to the exported environment.
type Env struct {
	// GOFLAGS is exported as GOFLAGS when not empty.
	GOFLAGS string
	// GOPRIVATE exports the private patterns as GOPRIVATE too, with
	// GONOPROXY=none so that private modules still go through the agent.
	GOPRIVATE bool
}

// EnvVar is one exported environment variable.
type EnvVar struct {
	Name, Value string
}

// BuiltinUpstream is the name of the built-in upstream,
// https://proxy.golang.org, which a policy can use without declaring it
// (and override by declaring an upstream of the same name).
const BuiltinUpstream = "public"

// Policy is an effective policy: a file's settings with the defaults
// applied, or Default.
type Policy struct {
	// Source is the policy file's name, or "(built-in defaults)".
	Source string
	// Upstreams are every upstream the policy declares, in file order,
	// plus the built-in one when a route uses it undeclared.
	Upstreams []*Upstream
	// DefaultRoute serves modules no route matches.
	DefaultRoute Route
	// Routes are checked in order; the first match serves the module.
	Routes []Route
	// Rules are the allow and deny rules in order.
	Rules []Rule
	// SumDB is the checksum database configuration.
	SumDB SumDB
	// Direct says whether cmd/go may fetch directly.
	Direct Direct
	// Retry is the retry policy.
	Retry Retry
	// CircuitBreaker is the circuit breaker policy.
	CircuitBreaker CircuitBreaker
	// Privilege is the privilege separation policy.
	Privilege Privilege
	// Warm is the warm step's defaults.
	Warm Warm
	// Env is what the policy adds to the exported environment.
	Env Env
}

// Defaults for settings a policy leaves out.
const (
	DefaultTimeout        = 60 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultAttempts       = 3
	DefaultBackoff        = 200 * time.Millisecond
	DefaultMaxBackoff     = 5 * time.Second
	DefaultFailures       = 5
	DefaultCooldown       = 30 * time.Second
	DefaultUser           = "goproxy-agent"
	DefaultSumDB          = "sum.golang.org"
	DefaultSource         = "(built-in defaults)"
	defaultDenyReason     = "denied by policy"
	allowListReason       = "not on the policy's allow list"
)

func builtinUpstream() *Upstream {
	u := newUpstream(BuiltinUpstream)
	u.URL = "https://proxy.golang.org"
	return u
}

func newUpstream(name string) *Upstream {
	return &Upstream{
		Name:           name,
		Timeout:        DefaultTimeout,
		ConnectTimeout: DefaultConnectTimeout,
		Fallthrough:    FallthroughNotFound,
		MinTLSVersion:  0x0303, // tls.VersionTLS12
	}
}

// Default returns the built-in policy, the behaviour without a policy
// file: every module from https://proxy.golang.org, no routes, no rules,
// sum.golang.org, direct not allowed, 3 attempts with backoff from 200ms
// to 5s, a breaker after 5 failures for 30s, privilege separation when
// possible, warm enabled without extraction (measured faster: cmd/go extracts on demand), and nothing exported but GOPROXY.
func Default() *Policy {
	pub := builtinUpstream()
	return &Policy{
		Source:         DefaultSource,
		Upstreams:      []*Upstream{pub},
		DefaultRoute:   Route{Upstreams: []*Upstream{pub}},
		SumDB:          SumDB{Enabled: true, Name: DefaultSumDB},
		Retry:          Retry{Attempts: DefaultAttempts, Backoff: DefaultBackoff, MaxBackoff: DefaultMaxBackoff},
		CircuitBreaker: CircuitBreaker{Failures: DefaultFailures, Cooldown: DefaultCooldown},
		Privilege:      Privilege{User: DefaultUser},
		Warm:           Warm{Enabled: true},
	}
}

// Route returns the route that serves modulePath (an unescaped module
// path): the first route whose patterns match, else the default route.
func (p *Policy) Route(modulePath string) Route {
	for _, r := range p.Routes {
		if r.matches(modulePath) {
			return r
		}
	}
	return p.DefaultRoute
}

// Denied reports whether the policy forbids modulePath (an unescaped module
// path) and why. The first allow or deny rule that matches decides; when
// none matches, the module is denied only if the policy has allow rules
// (an allow list). A denied module is never fetched or warmed; the agent
// answers 403 with the reason.
func (p *Policy) Denied(modulePath string) (reason string, denied bool) {
	hasAllow := false
	for _, r := range p.Rules {
		hasAllow = hasAllow || r.Allow
		if module.MatchPrefixPatterns(strings.Join(r.Modules, ","), modulePath) {
			if r.Allow {
				return "", false
			}
			return r.Reason, true
		}
	}
	if hasAllow {
		return allowListReason, true
	}
	return "", false
}

// PrivatePatterns returns the patterns whose module names must never reach
// a public checksum database: those of every private route, then
// SumDB.Private, without duplicates.
func (p *Policy) PrivatePatterns() []string {
	var out []string
	add := func(pats []string) {
		for _, pat := range pats {
			if !slices.Contains(out, pat) {
				out = append(out, pat)
			}
		}
	}
	for _, r := range p.Routes {
		if r.Private {
			add(r.Modules)
		}
	}
	add(p.SumDB.Private)
	return out
}

// GoEnv returns the environment to export to the job, in order: GOPROXY
// (goproxyURL, the agent, followed by "direct" when direct is allowed,
// after the separator of the default route's last upstream: ",direct" when
// it falls through on 404/410, "|direct" on any error), then
// GOSUMDB when it is not cmd/go's default, GONOSUMDB (the private
// patterns), GOPRIVATE and GONOPROXY=none when the policy asks, and
// GOFLAGS when the policy sets it. No value holds a secret.
func (p *Policy) GoEnv(goproxyURL string) []EnvVar {
	proxy := goproxyURL
	if p.Direct.Allowed {
		proxy += p.directSeparator() + "direct"
	}
	env := []EnvVar{{"GOPROXY", proxy}}
	priv := strings.Join(p.PrivatePatterns(), ",")
	switch {
	case !p.SumDB.Enabled:
		env = append(env, EnvVar{"GOSUMDB", "off"})
	case p.SumDB.Key != "":
		env = append(env, EnvVar{"GOSUMDB", p.SumDB.Key})
	case p.SumDB.Name != DefaultSumDB:
		env = append(env, EnvVar{"GOSUMDB", p.SumDB.Name})
	}
	if priv != "" && p.SumDB.Enabled {
		env = append(env, EnvVar{"GONOSUMDB", priv})
	}
	if priv != "" && p.Env.GOPRIVATE {
		env = append(env, EnvVar{"GOPRIVATE", priv}, EnvVar{"GONOPROXY", "none"})
	}
	if p.Env.GOFLAGS != "" {
		env = append(env, EnvVar{"GOFLAGS", p.Env.GOFLAGS})
	}
	return env
}

// directSeparator is the GOPROXY separator between the agent and direct:
// the default route's last upstream's.
func (p *Policy) directSeparator() string {
	if n := len(p.DefaultRoute.Upstreams); n > 0 {
		return p.DefaultRoute.Upstreams[n-1].Fallthrough.Separator()
	}
	return ","
}

// Endpoints returns the host:port list the job needs to reach, for an
// egress allowlist such as harden-runner's allowed-endpoints: every
// upstream of the default route and of the routes, in order, then the
// checksum database's URL when set. When direct is allowed, cmd/go also
// reaches version control hosts that no policy can list.
func (p *Policy) Endpoints() []string {
	var out []string
	add := func(hp string) {
		if hp != "" && !slices.Contains(out, hp) {
			out = append(out, hp)
		}
	}
	for _, u := range p.DefaultRoute.Upstreams {
		add(u.HostPort())
	}
	for _, r := range p.Routes {
		for _, u := range r.Upstreams {
			add(u.HostPort())
		}
	}
	if p.SumDB.Enabled && p.SumDB.URL != "" {
		add((&Upstream{URL: p.SumDB.URL}).HostPort())
	}
	return out
}

// upstream returns the declared upstream called name, or nil.
func (p *Policy) upstream(name string) *Upstream {
	for _, u := range p.Upstreams {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// Package server is the agent process: what 'goproxy-setup agent' runs
// after the bootstrap (package agent) has started it. It owns the loopback
// listener and who may use it (the peer-uid check and connection caps), the
// fetcher that routes module paths to their upstream clients, the
// classification of upstream failures into the layer and fix that cmd/go
// prints, the cache of background diagnoses, and the privilege drop after
// binding.
package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/policies"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// ServeConfig configures Serve, the agent process.
type ServeConfig struct {
	// Policy is the effective policy (policies.Resolve: --upstream is
	// already in its default route; policies.Default when nil).
	Policy *policies.Policy
	// Identity is presented to the upstreams of the default route and of
	// routes whose upstreams declare no identity of their own; nil for
	// none.
	Identity *tlsauth.Identity
	// Roots are extra trusted roots (nil: system roots).
	Roots *x509.CertPool
	// Timeout is the per-fetch timeout.
	Timeout time.Duration
	// Listen is the address to listen on, "127.0.0.1:0" by default. Only
	// loopback addresses are accepted.
	Listen string
	// Token is the capability token (proxy.NewToken).
	Token string
	// Nonce, when set, is echoed (with the process id) by the identity
	// admin endpoint, so that 'stop' and 'run' signal only this agent.
	Nonce string
	// PeerCheck serves only JobUID and root: each connection's peer uid is
	// looked up in /proc/net/tcp{,6}, others are answered 403. Where the
	// lookup is unavailable the token alone guards the agent (logged once).
	PeerCheck bool
	JobUID    int
	// Limits cap the connections local peers can hold (ConnLimits).
	Limits ConnLimits
	// Classify and Diagnose feed the 502/504 bodies (see proxy.Config).
	Classify func(err error) (layer, remedy string)
	Diagnose func(ctx context.Context, upstreamURL string) string
	// Diagnoses lists the latest diagnoses for the final report.
	Diagnoses func() []string
	// AfterListen runs once the listener is bound and before serving: the
	// place to drop privileges. An error stops the agent.
	AfterListen func() error
	// Ready is called with the served base URL (http://addr/token) once
	// the agent serves.
	Ready func(baseURL string)
	// Logger receives the agent's log; nil is silent.
	Logger hclog.Logger
}

// Serve runs the forwarder until ctx is done.
func Serve(ctx context.Context, cfg ServeConfig) error {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	fetcher, err := NewFetcher(cfg.Policy, cfg.Identity, cfg.Roots, cfg.Timeout, log)
	if err != nil {
		return err
	}
	defer fetcher.Close()
	deny := func(string) (string, bool) { return "", false }
	if cfg.Policy != nil {
		deny = cfg.Policy.Denied
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	h, err := proxy.New(proxy.Config{
		Stop:      stop,
		Token:     cfg.Token,
		Upstream:  fetcher,
		Classify:  cfg.Classify,
		Diagnose:  cfg.Diagnose,
		Diagnoses: cfg.Diagnoses,
		Deny:      deny,
		Logger:    log.Named("proxy"),
	})
	if err != nil {
		return err
	}
	addr := cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := checkLoopback(addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("listen on %s: %w", addr, err))
	}
	defer ln.Close()
	if cfg.AfterListen != nil {
		if err := cfg.AfterListen(); err != nil {
			return err
		}
	}
	jobUID := cfg.JobUID
	if !cfg.PeerCheck {
		jobUID = unknownUID
	}
	g := newGuard(jobUID, cfg.Limits, log.Named("guard"))
	srv := &http.Server{
		Handler: guardHandler(g, cfg.Token, cfg.Nonce, h),
		// A GOPROXY request is a short GET without a body (bodies are
		// refused): bounding its headers in time and size bounds the
		// request. No ReadTimeout: its deadline stays on the connection
		// while the handler runs, and the server's background read would
		// then cancel a long relay (a big module zip) mid-way. No
		// WriteTimeout either, for the same relay.
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       connContext,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(g.listener(ln)) }()
	base := "http://" + ln.Addr().String() + "/" + cfg.Token
	log.Info("agent serving", "addr", ln.Addr().String(), "upstreams", fetcher.String())
	if cfg.Ready != nil {
		cfg.Ready(base)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	st := h.Stats()
	log.Info("agent stopped", "requests", st.Requests, "failures", st.Failures, "bytes", st.Bytes)
	return err
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("listen address %q: %w (use 127.0.0.1:PORT)", addr, err))
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("listen address %q is not loopback: the agent serves only 127.0.0.1 or ::1", addr))
	}
	return nil
}

// Fetcher routes each request to the upstream list of the policy route that
// serves its module.
type Fetcher struct {
	def    *upstream.Client
	routes []routeClient
}

type routeClient struct {
	patterns string
	client   *upstream.Client
}

// NewFetcher builds the upstream clients for the routes of an effective
// policy (policies.Resolve; nil: the default policy).
func NewFetcher(pol *policies.Policy, id *tlsauth.Identity, roots *x509.CertPool, timeout time.Duration, log hclog.Logger) (*Fetcher, error) {
	if pol == nil {
		pol = policies.Default()
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	retry := upstream.Retry{Attempts: pol.Retry.Attempts, Backoff: pol.Retry.Backoff, MaxBackoff: pol.Retry.MaxBackoff}
	build := func(route policies.Route) (*upstream.Client, error) {
		entries, ups := upstream.RouteEntries(route, false), route.Upstreams
		var origins []upstream.Origin
		for _, e := range upstream.Proxies(entries) {
			o := upstream.Origin{Host: e.URL.Host, Identity: id, Roots: roots}
			for _, u := range ups {
				if pu, err := url.Parse(u.URL); err == nil && strings.EqualFold(pu.Host, e.URL.Host) {
					if u.ClientCert != "" {
						uid, err := tlsauth.LoadFiles(u.ClientCert, u.ClientKey)
						if err != nil {
							return nil, fmt.Errorf("upstream %q: %w", u.Name, err)
						}
						o.Identity = uid
					}
					if u.CACert != "" {
						r, err := tlsauth.LoadRoots(u.CACert)
						if err != nil {
							return nil, fmt.Errorf("upstream %q: %w", u.Name, err)
						}
						o.Roots = r
					}
					o.SPKIPins = u.SPKIPins
					o.MinTLSVersion = u.MinTLSVersion
					o.BearerToken = u.Token.Reveal()
					if u.TokenEnv != "" {
						o.BearerToken = os.Getenv(u.TokenEnv)
						if o.BearerToken == "" {
							return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("upstream %q: token_env names %s, which is empty or unset: set it (as a CI secret) or remove token_env", u.Name, u.TokenEnv))
						}
					}
					// A policy's own timeouts win; its built-in defaults
					// leave --timeout in charge.
					if u.Timeout != policies.DefaultTimeout || u.ConnectTimeout != policies.DefaultConnectTimeout {
						t := upstream.DefaultTimeouts(u.Timeout)
						if u.ConnectTimeout > 0 {
							t.Connect, t.TLSHandshake = u.ConnectTimeout, u.ConnectTimeout
						}
						o.Timeouts = &t
					}
				}
			}
			origins = append(origins, o)
		}
		t := upstream.NewTransport(upstream.TransportOptions{
			Origins:  origins,
			Timeouts: upstream.DefaultTimeouts(timeout),
			Retry:    retry,
			Logger:   log.Named("upstream"),
		})
		return upstream.New(upstream.Options{
			Entries:   entries,
			Transport: t,
			Logger:    log.Named("upstream"),
			Breaker:   upstream.Breaker{Failures: pol.CircuitBreaker.Failures, Cooldown: pol.CircuitBreaker.Cooldown},
		}), nil
	}
	f := &Fetcher{}
	var err error
	if f.def, err = build(pol.DefaultRoute); err != nil {
		return nil, err
	}
	for _, r := range pol.Routes {
		c, err := build(r)
		if err != nil {
			return nil, err
		}
		f.routes = append(f.routes, routeClient{patterns: strings.Join(r.Modules, ","), client: c})
	}
	return f, nil
}

// Get implements proxy.Fetcher: the module's route serves the request.
func (f *Fetcher) Get(ctx context.Context, path string) (*http.Response, error) {
	return f.client(path).Get(ctx, path)
}

// Open implements agent/warm's Source.
func (f *Fetcher) Open(ctx context.Context, path string) (io.ReadCloser, error) {
	return f.client(path).Open(ctx, path)
}

// Close stops the clients' health checks.
func (f *Fetcher) Close() error {
	errs := []error{f.def.Close()}
	for _, r := range f.routes {
		errs = append(errs, r.client.Close())
	}
	return errors.Join(errs...)
}

// Default returns the client of the default route.
func (f *Fetcher) Default() *upstream.Client { return f.def }

func (f *Fetcher) client(path string) *upstream.Client {
	if len(f.routes) == 0 || strings.HasPrefix(path, "sumdb/") {
		return f.def
	}
	if r, err := proxy.ParsePath(path); err == nil {
		for _, rc := range f.routes {
			if module.MatchPrefixPatterns(rc.patterns, r.Module) {
				return rc.client
			}
		}
	}
	return f.def
}

// String lists the default route's upstreams, redacted.
func (f *Fetcher) String() string {
	var parts []string
	for _, e := range f.def.Entries() {
		parts = append(parts, e.String())
	}
	return strings.Join(parts, ",")
}

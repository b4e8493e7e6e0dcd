// Package routes owns the policy's routes as upstream clients: Fetcher
// sends each GOPROXY path to the upstream list of the route that serves its
// module (the default route otherwise, and always for sumdb/), each origin
// with its own identity, roots, pins, token and timeouts from the policy.
// The agent process serves it (agent/server); 'warm' and the benchmark
// fetch through it straight to the upstream.
package routes

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
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

// New builds the upstream clients for the routes of an effective
// policy (policies.Resolve; nil: the default policy).
func New(pol *policies.Policy, id *tlsauth.Identity, roots *x509.CertPool, timeout time.Duration, log hclog.Logger) (*Fetcher, error) {
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

// Health returns the health and counters of every upstream of every
// route, in the default route's order then the routes'; an upstream that
// serves several routes is listed once, its counters summed (its circuits
// are per route: the first one's state is shown).
func (f *Fetcher) Health() []upstream.Health {
	var out []upstream.Health
	at := map[string]int{}
	clients := []*upstream.Client{f.def}
	for _, r := range f.routes {
		clients = append(clients, r.client)
	}
	for _, c := range clients {
		for _, h := range c.Health() {
			i, ok := at[h.Upstream]
			if !ok {
				at[h.Upstream] = len(out)
				out = append(out, h)
				continue
			}
			out[i].Counters = out[i].Counters.Add(h.Counters)
		}
	}
	return out
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

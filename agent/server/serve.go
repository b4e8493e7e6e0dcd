// Package server is the agent process: what 'goproxy-setup agent' runs
// (Run: its start-up from the flags and the handoff, the readiness line of
// agent/wire) after the bootstrap's supervisor (agent/supervisor) has
// started it. It owns the loopback listener and who may use it (the
// peer-uid check and connection caps, the identity endpoint), the
// classification of upstream failures into the layer and fix that cmd/go
// prints, the cache of background diagnoses, and the privilege drop after
// binding. The upstream clients are agent/routes'.
package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/ci"
	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/routes"
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
	// Sidecar serves a pod's job container from a container of its own:
	// the peer check is required and admits JobUID alone (not root: root in
	// another container is not the job), the job gets its environment at
	// wire.SidecarEnvPath, and the probes wire.ProbePath.
	Sidecar bool
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
	// StatsFile, when set, is kept holding a secret-free snapshot of the
	// stats (see snapshotter), written as the agent's (dropped) user.
	StatsFile string
	// ShutdownGrace is how long a stopping agent (ctx done: SIGTERM,
	// SIGINT, the stop endpoint) lets the requests in flight finish before
	// it closes their connections; 0 means DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// Logger receives the agent's log; nil is silent.
	Logger hclog.Logger
}

// DefaultShutdownGrace is the ShutdownGrace when none is set.
const DefaultShutdownGrace = 5 * time.Second

// Serve runs the forwarder until ctx is done.
func Serve(ctx context.Context, cfg ServeConfig) error {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	fetcher, err := routes.New(cfg.Policy, cfg.Identity, cfg.Roots, cfg.Timeout, log)
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
	if !cfg.PeerCheck && !cfg.Sidecar {
		jobUID = unknownUID
	}
	g := newGuard(jobUID, cfg.Sidecar, cfg.Limits, log.Named("guard"))
	base := "http://" + ln.Addr().String() + "/" + cfg.Token
	var env func(string) ([]byte, error)
	if cfg.Sidecar {
		if !g.lookup {
			return errkind.Mark(errkind.Local, errors.New("the sidecar needs the peer-uid check (sock_diag or /proc/net/tcp), which is unavailable here: without it any container of the pod could take the job's GOPROXY"))
		}
		pol := cfg.Policy
		if pol == nil {
			pol = policies.Default()
		}
		env = func(format string) ([]byte, error) {
			f := ci.FormatShell
			if format != "" {
				var err error
				if f, err = ci.ParseFormat(format); err != nil {
					return nil, err
				}
			}
			var b bytes.Buffer
			err := ci.WriteEnv(&b, f, pol.GoEnv(base))
			return b.Bytes(), err
		}
	}
	running := &inFlight{token: cfg.Token, reqs: map[*http.Request]string{}}
	srv := &http.Server{
		Handler: running.handler(guardHandler(g, cfg.Token, cfg.Nonce, env, h)),
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
	log.Info("agent serving", "addr", ln.Addr().String(), "upstreams", fetcher.String())
	var snap *snapshotter
	if cfg.StatsFile != "" {
		snap = &snapshotter{path: cfg.StatsFile, stats: h.Stats, log: log}
		snap.write()
		go snap.run(ctx)
	}
	if cfg.Ready != nil {
		cfg.Ready(base)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	grace := cfg.ShutdownGrace
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running after the grace period (a stalled
		// upstream, a client that does not read) are cut: stopping is what
		// was asked, and a clean stop exits 0 (the pod's and the job's
		// contract), so this is logged, not returned.
		paths := running.paths()
		log.Warn("requests still running after the shutdown grace period were cut", "grace", grace, "requests", len(paths), "paths", paths)
		srv.Close()
	}
	if snap != nil {
		snap.write()
	}
	st := h.Stats()
	log.Info("agent stopped", "requests", st.Requests, "failures", st.Failures, "bytes", st.Bytes)
	return nil
}

// inFlight tracks the requests being served, for the log of a shutdown
// that has to cut them.
type inFlight struct {
	token string
	mu    sync.Mutex
	reqs  map[*http.Request]string
}

func (f *inFlight) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The path without the capability token, which never reaches a
		// log; a request without it is named by its method only.
		p, ok := strings.CutPrefix(r.URL.Path, "/"+f.token+"/")
		if !ok || f.token == "" {
			p = "(" + r.Method + " without the token)"
		}
		f.mu.Lock()
		f.reqs[r] = p
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			delete(f.reqs, r)
			f.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

// paths returns the tokenless paths of the requests in flight, sorted.
func (f *inFlight) paths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ps := make([]string, 0, len(f.reqs))
	for _, p := range f.reqs {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
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

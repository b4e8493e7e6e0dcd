package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"

	"golang.org/x/sys/unix"

	"github.com/goproxy-setup/goproxy-setup/agent"
	"github.com/goproxy-setup/goproxy-setup/agent/privilege"
	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/server"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

func init() { register(agentCmd{}) }

type agentCmd struct{}

func (agentCmd) Name() string { return "agent" }
func (agentCmd) Synopsis() string {
	return "run the loopback GOPROXY forwarder in the foreground"
}

func (agentCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	handoffStdin := fs.Bool("handoff-stdin", false, "read the capability token, client identity, upstream list and job uid from stdin (as 'run' passes them)")
	readyFD := fs.Int("ready-fd", 0, "write 'ready ADDR' (or 'fail KIND') to this file descriptor once serving, then close it")
	runAs := fs.String("run-as", "", "drop privileges to this user after binding the listener (needs root)")
	privateDir := fs.String("private-dir", "", "with --run-as: the agent user's private directory (0700) for its key")
	renewURL := fs.String("renew-ca-url", "", "step-ca URL to renew the client certificate with while running")
	renewFP := fs.String("renew-ca-fingerprint", "", "SHA-256 fingerprint of that step-ca's root")
	var limits server.ConnLimits
	fs.IntVar(&limits.Owner, "max-conns-job", 0, "connections the job's uid and root may hold (0: 1024)")
	fs.IntVar(&limits.PerPeer, "max-conns-per-peer", 0, "connections each other local uid may hold (0: 16)")
	fs.IntVar(&limits.Others, "max-conns-others", 0, "connections all other uids together may hold (0: 256)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	ready := false
	if *readyFD > 0 {
		// A failure before serving is told to the bootstrap with its kind,
		// so that it exits with the right code instead of guessing.
		defer func() {
			if err != nil && !ready {
				f := os.NewFile(uintptr(*readyFD), "ready")
				fmt.Fprintf(f, "%s%s\n", agent.FailPrefix, errkind.Of(err))
			}
		}()
	}
	log := newLogger("agent", &c, stderr)
	pol, err := loadPolicy(&c)
	if err != nil {
		return err
	}
	// The identity comes from the handoff when the bootstrap started us,
	// else from the flags; the extra roots always from --ca-cert.
	id, roots, err := loadIdentity(&commonFlags{caCert: c.caCert})
	if err != nil {
		return err
	}
	// Without a handoff the agent runs in the foreground for the user who
	// started it: that user (and root) is served.
	h := privilege.Secrets{JobUID: os.Getuid()}
	if *handoffStdin {
		if c.upstream.set {
			return usageErrorf("--upstream with --handoff-stdin: the upstream list travels in the handoff (it may hold a password, and ps shows the command line to every user)")
		}
		if h, err = privilege.ReadSecrets(os.Stdin); err != nil {
			return err
		}
		// The one path from policy to routes: the handed-off list replaces
		// the default route, as --upstream does (Setup refused an empty one).
		if h.Upstream != "" {
			if err := pol.WithUpstreamList(h.Upstream); err != nil {
				return err
			}
		}
		if err := h.ApplyEnv(); err != nil {
			return err
		}
		if len(h.CertPEM) > 0 {
			if id, err = tlsauth.LoadPEM(h.CertPEM, h.KeyPEM); err != nil {
				return err
			}
		}
	} else if id, _, err = loadIdentity(&commonFlags{clientCert: c.clientCert, clientKey: c.clientKey}); err != nil {
		return err
	}
	defer h.Zero()
	if h.Token == "" {
		if h.Token, err = proxy.NewToken(); err != nil {
			return err
		}
	}
	if *renewURL != "" && id != nil {
		r, err := tlsauth.NewRenewer(id, tlsauth.RenewConfig{CAURL: *renewURL, Fingerprint: *renewFP, Logger: log.Named("renew")})
		if err != nil {
			return err
		}
		go r.Run(ctx)
	}
	var urls []*url.URL
	for _, e := range upstream.RouteEntries(pol.DefaultRoute, false) {
		urls = append(urls, e.URL)
	}
	cache := server.NewDiagnosisCache(id, roots, log, urls...)
	token := h.Token
	if *runAs != "" && *privateDir != "" {
		// The key copies do not outlive the agent: removed when it stops
		// (as the agent user, who owns them); 'stop' and the next 'run'
		// remove what a crash leaves.
		defer func() {
			if rerr := privilege.ReleaseCustody(*privateDir); rerr != nil {
				log.Warn("could not remove the key copies", "error", rerr)
			}
		}()
	}
	return server.Serve(ctx, server.ServeConfig{
		Policy:    pol,
		Identity:  id,
		Roots:     roots,
		Timeout:   c.timeout,
		Listen:    *listen,
		Token:     token,
		Nonce:     h.Nonce,
		PeerCheck: h.JobUID >= 0,
		JobUID:    h.JobUID,
		Limits:    limits,
		Classify:  server.ClassifierWith(id, cache),
		Diagnose:  cache.Brief,
		Diagnoses: cache.Briefs,
		AfterListen: func() error {
			if *runAs == "" {
				return nil
			}
			return server.DropTo(ctx, *runAs, *privateDir, &h)
		},
		Ready: func(base string) {
			ready = true
			if *readyFD > 0 {
				f := os.NewFile(uintptr(*readyFD), "ready")
				fmt.Fprintf(f, "ready %s\n", base[len("http://"):len(base)-len(token)-1])
				// Point the descriptor at stderr (the log) so the
				// bootstrap's pipe closes and later writes go to the log.
				unix.Dup2(2, *readyFD)
				return
			}
			fmt.Fprintf(stdout, "GOPROXY=%s\n", base)
		},
		Logger: log,
	})
}

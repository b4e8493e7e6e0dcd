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
	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

func init() { register(agentCmd{}) }

type agentCmd struct{}

func (agentCmd) Name() string { return "agent" }
func (agentCmd) Synopsis() string {
	return "run the loopback GOPROXY forwarder in the foreground"
}

func (agentCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	handoffStdin := fs.Bool("handoff-stdin", false, "read the capability token and client identity from stdin (as 'run' passes them)")
	readyFD := fs.Int("ready-fd", 0, "write 'ready ADDR' to this file descriptor once serving, then close it")
	runAs := fs.String("run-as", "", "drop privileges to this user after binding the listener (needs root)")
	privateDir := fs.String("private-dir", "", "with --run-as: the agent user's private directory (0700) for its key")
	renewURL := fs.String("renew-ca-url", "", "step-ca URL to renew the client certificate with while running")
	renewFP := fs.String("renew-ca-fingerprint", "", "SHA-256 fingerprint of that step-ca's root")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
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
	var token string
	var certPEM, keyPEM []byte
	if *handoffStdin {
		h, err := agent.ReadHandoff(os.Stdin)
		if err != nil {
			return err
		}
		if err := h.ApplyEnv(); err != nil {
			return err
		}
		token, certPEM, keyPEM = h.Token, h.CertPEM, h.KeyPEM
		if len(h.CertPEM) > 0 {
			if id, err = tlsauth.LoadPEM(h.CertPEM, h.KeyPEM); err != nil {
				return err
			}
		}
	} else if id, _, err = loadIdentity(&commonFlags{clientCert: c.clientCert, clientKey: c.clientKey}); err != nil {
		return err
	}
	if token == "" {
		if token, err = proxy.NewToken(); err != nil {
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
	cache := agent.NewDiagnosisCache(id, roots, log, urls...)
	return agent.Serve(ctx, agent.ServeConfig{
		Policy:    pol,
		Identity:  id,
		Roots:     roots,
		Timeout:   c.timeout,
		Listen:    *listen,
		Token:     token,
		Classify:  agent.ClassifierWith(id, cache),
		Diagnose:  cache.Brief,
		Diagnoses: cache.Briefs,
		AfterListen: func() error {
			if *runAs == "" {
				return nil
			}
			return agent.DropTo(ctx, *runAs, *privateDir, certPEM, keyPEM)
		},
		Ready: func(base string) {
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

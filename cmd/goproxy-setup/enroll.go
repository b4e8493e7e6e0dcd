package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

func init() { register(enrollCmd{}) }

// enrollFlags are the step-ca enrolment flags, shared by enroll, run and
// agent: register them on a FlagSet, then config() after parsing.
type enrollFlags struct {
	caURL         string
	caFingerprint string
	token         string
	oidc          string
	oidcAudience  string
	oidcTokenVar  string
	provisioner   string
	keyType       string
	lifetime      time.Duration
}

func (e *enrollFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&e.caURL, "ca-url", "", "step-ca URL to enrol with for the client certificate")
	fs.StringVar(&e.caFingerprint, "ca-fingerprint", "", "SHA-256 fingerprint (hex) of the step-ca root; required with --ca-url (the root is pinned, never trusted on first use)")
	fs.StringVar(&e.token, "token", "", "one-time token of a step-ca JWK provisioner (`step ca token`); a secret, prefer the environment twin")
	fs.StringVar(&e.oidc, "oidc", "", "use the CI's OIDC token for a step-ca OIDC provisioner: github or gitlab")
	fs.StringVar(&e.oidcAudience, "oidc-audience", "", "audience of the OIDC token: the OIDC provisioner's clientID (default: from --provisioner or the CA's only OIDC provisioner)")
	fs.StringVar(&e.oidcTokenVar, "oidc-token-var", tlsauth.DefaultGitLabTokenVar, "GitLab: the id_tokens variable holding the token")
	fs.StringVar(&e.provisioner, "provisioner", "", "step-ca provisioner name (optional: the token names it)")
	fs.StringVar(&e.keyType, "key-type", "ecdsa", "type of the key generated for the certificate: ecdsa (P-256), ed25519 or rsa")
	fs.DurationVar(&e.lifetime, "cert-lifetime", 0, "certificate lifetime to ask for (default: the provisioner's)")
}

// config returns the enrolment configuration, or nil without --ca-url.
func (e *enrollFlags) config() (*tlsauth.EnrollConfig, error) {
	if e.caURL == "" {
		if e.token != "" || e.oidc != "" || e.caFingerprint != "" {
			return nil, usageErrorf("--token, --oidc and --ca-fingerprint need --ca-url: give the step-ca URL")
		}
		return nil, nil
	}
	switch {
	case e.caFingerprint == "":
		return nil, usageErrorf("--ca-url needs --ca-fingerprint: the SHA-256 of the CA root (`step certificate fingerprint root_ca.crt` on the CA)")
	case e.token == "" && e.oidc == "":
		return nil, usageErrorf("--ca-url needs --token (JWK provisioner) or --oidc github|gitlab (OIDC provisioner)")
	case e.token != "" && e.oidc != "":
		return nil, usageErrorf("--token and --oidc both given: pass only one")
	case e.oidc != "" && e.oidc != tlsauth.OIDCGitHub && e.oidc != tlsauth.OIDCGitLab:
		return nil, usageErrorf("--oidc %q: use github or gitlab", e.oidc)
	}
	return &tlsauth.EnrollConfig{
		CAURL:          e.caURL,
		Fingerprint:    e.caFingerprint,
		Token:          e.token,
		OIDC:           e.oidc,
		Audience:       e.oidcAudience,
		GitLabTokenVar: e.oidcTokenVar,
		Provisioner:    e.provisioner,
		KeyType:        e.keyType,
		Lifetime:       e.lifetime,
	}, nil
}

type enrollCmd struct{}

func (enrollCmd) Name() string { return "enroll" }
func (enrollCmd) Synopsis() string {
	return "obtain or renew the client certificate from a step-ca and write it"
}

const enrollUsage = `Usage: goproxy-setup enroll --ca-url URL --ca-fingerprint HEX (--token T | --oidc github|gitlab) --out-dir DIR
       goproxy-setup enroll --ca-url URL --ca-fingerprint HEX --out-dir DIR [--watch]

With a token (or --oidc) it enrols: generates a key here, has the step-ca sign
it, and writes DIR/client.crt and DIR/client.key (0600, DIR 0700) atomically.
Without one it renews the certificate already in DIR. --watch keeps running
and renews at two thirds of each lifetime, rewriting the files.
It prints GOPROXY_SETUP_CLIENT_CERT=... and GOPROXY_SETUP_CLIENT_KEY=... lines.

`

func (enrollCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	var e enrollFlags
	e.register(fs)
	outDir := fs.String("out-dir", "", "directory for client.crt and client.key (created 0700)")
	watch := fs.Bool("watch", false, "keep running and renew the certificate until interrupted")
	var c commonFlags
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error, off")
	fs.StringVar(&c.logFormat, "log-format", "", "log format: text or json (default text on a terminal, json otherwise)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprint(stderr, enrollUsage)
		return usageErrorf("enroll takes no arguments, got %q", strings.Join(fs.Args(), " "))
	}
	if *outDir == "" {
		fmt.Fprint(stderr, enrollUsage)
		return usageErrorf("--out-dir is required: the directory to write client.crt and client.key to")
	}
	if e.caURL == "" || e.caFingerprint == "" {
		fmt.Fprint(stderr, enrollUsage)
		return usageErrorf("--ca-url and --ca-fingerprint are required")
	}
	log := newLogger("enroll", &c, stderr)
	certFile, keyFile := filepath.Join(*outDir, "client.crt"), filepath.Join(*outDir, "client.key")

	var id *tlsauth.Identity
	renewCfg := tlsauth.RenewConfig{CAURL: e.caURL, Fingerprint: e.caFingerprint, Dir: *outDir, Logger: log}
	if e.token != "" || e.oidc != "" {
		cfg, err := e.config()
		if err != nil {
			return err
		}
		cfg.Logger = log
		cert, err := tlsauth.Enroll(ctx, *cfg)
		if err != nil {
			return err
		}
		if certFile, keyFile, err = tlsauth.WriteFiles(*outDir, cert); err != nil {
			return err
		}
		if id, err = tlsauth.New(cert); err != nil {
			return err
		}
		if e.oidc != "" {
			// An OIDC token can be had again while the job runs.
			renewCfg.Reenroll = func(ctx context.Context) (tls.Certificate, error) { return tlsauth.Enroll(ctx, *cfg) }
		}
	} else {
		var err error
		if id, err = tlsauth.LoadFiles(certFile, keyFile); err != nil {
			return fmt.Errorf("renew: %w (enrol first with --token or --oidc)", err)
		}
		r, err := tlsauth.NewRenewer(id, renewCfg)
		if err != nil {
			return err
		}
		if err := r.RenewNow(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "GOPROXY_SETUP_CLIENT_CERT=%s\nGOPROXY_SETUP_CLIENT_KEY=%s\n", certFile, keyFile)
	if !*watch {
		return nil
	}
	r, err := tlsauth.NewRenewer(id, renewCfg)
	if err != nil {
		return err
	}
	log.Info("renewing until interrupted", "next", r.NextRenewal().UTC().Format(time.RFC3339))
	return r.Run(ctx)
}

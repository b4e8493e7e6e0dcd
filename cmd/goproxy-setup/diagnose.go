package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/agent"
	"github.com/goproxy-setup/goproxy-setup/agent/diagnose"
	"github.com/goproxy-setup/goproxy-setup/agent/supervisor"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

func init() { register(diagnoseCmd{}) }

type diagnoseCmd struct{}

func (diagnoseCmd) Name() string { return "diagnose" }
func (diagnoseCmd) Synopsis() string {
	return "check the path to the upstream(s) layer by layer and say what is broken"
}

const diagnoseHelp = `Usage: goproxy-setup diagnose [flags] [module@version]

Runs the diagnostic ladder against every proxy in --upstream, over IPv4 and
IPv6 separately: env, dns, tcp, proxy, tls, client-cert, clock, http and
sumdb. With module@version it probes <module>/@v/list; otherwise the base URL.

Exit status: 0 when every check is ok or a warning, 3 when a layer fails (the
report is also written into --state-dir and its path printed), 2 on bad input.

EXAMPLES
  goproxy-setup diagnose --upstream https://goproxy.corp:8443 \
      --client-cert ci.crt --client-key ci.key --ca-cert corp-root.pem
  goproxy-setup diagnose --format json corp.example/lib@v1.2.3

FLAGS (each also read from GOPROXY_SETUP_<NAME>)
`

func (diagnoseCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("diagnose", flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	format := fs.String("format", "text", "report format: text, markdown, json, junit or github (workflow annotations)")
	total := fs.Duration("total", 20*time.Second, "deadline for the whole diagnosis")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	fs.Usage = func() { fmt.Fprint(stderr, diagnoseHelp); fs.PrintDefaults() }
	write, err := reportWriter(*format, stdout)
	if err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageErrorf("diagnose takes at most one module@version argument, got %d: pass one module, e.g. example.com/m@v1.2.3", fs.NArg())
	}
	var mod string
	if fs.NArg() == 1 {
		mod = fs.Arg(0)
		path, version, _ := strings.Cut(mod, "@")
		if err := module.CheckPath(path); err != nil {
			return usageErrorf("module argument %q: %v: pass module@version, e.g. example.com/m@v1.2.3", mod, err)
		}
		if strings.Contains(mod, "@") && version == "" {
			return usageErrorf("module argument %q has an empty version: pass module@version, e.g. example.com/m@v1.2.3", mod)
		}
	}
	if *total <= 0 {
		return usageErrorf("--total %s: pass a positive duration, e.g. 20s", *total)
	}
	// The same path as the other commands: --policy (or the built-in
	// default, https://proxy.golang.org) with --upstream in its default
	// route.
	pol, err := loadPolicy(&c)
	if err != nil {
		return err
	}
	entries := upstream.RouteEntries(pol.DefaultRoute, false)
	getCert, leaf, err := diagnoseIdentity(&c)
	if err != nil {
		return err
	}
	_, roots, err := loadIdentity(&commonFlags{caCert: c.caCert})
	if err != nil {
		return err
	}
	var targets []diagnose.Target
	for _, e := range entries {
		targets = append(targets, diagnose.Target{URL: e.URL, GetClientCertificate: getCert, ClientLeaf: leaf, Roots: roots, Module: mod})
	}
	step := 5 * time.Second
	if c.timeout > 0 && c.timeout < step {
		step = c.timeout
	}
	logger := newLogger("diagnose", &c, stderr)
	r := diagnose.Run(ctx, targets, diagnose.Options{Total: *total, Step: step, Logger: logger})
	if err := write(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if !r.Failed() {
		return nil
	}
	dir := c.stateDir
	if dir == "" {
		dir = supervisor.DefaultStateDir()
	}
	if d, err := supervisor.OpenStateDir(dir); err == nil {
		if path, err := agent.WriteReports(d, r); err == nil {
			fmt.Fprintf(stderr, "diagnose: report written to %s\n", path)
		}
		d.Close()
	}
	return errkind.Mark(errkind.Unreachable, fmt.Errorf("upstream check failed at %s: %s", r.Verdict.Layer, r.Verdict.Summary))
}

func reportWriter(format string, w io.Writer) (func(*diagnose.Report) error, error) {
	switch format {
	case "text":
		color := isTerminal(w) && os.Getenv("NO_COLOR") == ""
		return func(r *diagnose.Report) error { return diagnose.WriteText(w, r, color) }, nil
	case "markdown", "md":
		return func(r *diagnose.Report) error { return diagnose.WriteMarkdown(w, r) }, nil
	case "json":
		return func(r *diagnose.Report) error { return diagnose.WriteJSON(w, r) }, nil
	case "junit":
		return func(r *diagnose.Report) error { return diagnose.WriteJUnit(w, r) }, nil
	case "github":
		return func(r *diagnose.Report) error { return diagnose.WriteGitHubAnnotations(w, r) }, nil
	}
	return nil, usageErrorf("--format %q: use text, markdown, json, junit or github", format)
}

// diagnoseIdentity loads the client identity. Unlike the other commands it
// accepts an expired or not yet valid certificate: saying so is the
// diagnosis's job (the client-cert layer), not a reason to stop.
func diagnoseIdentity(c *commonFlags) (func(*tls.CertificateRequestInfo) (*tls.Certificate, error), *x509.Certificate, error) {
	if c.clientCert == "" && c.clientKey == "" {
		return nil, nil, nil
	}
	if c.clientCert == "" || c.clientKey == "" {
		return nil, nil, usageErrorf("--client-cert and --client-key go together: give both or neither")
	}
	id, err := tlsauth.LoadFiles(c.clientCert, c.clientKey)
	if err == nil {
		return id.GetClientCertificate, id.Certificate().Leaf, nil
	}
	var ve *tlsauth.ValidityError
	if !errors.As(err, &ve) {
		return nil, nil, err
	}
	cert, lerr := tls.LoadX509KeyPair(c.clientCert, c.clientKey)
	if lerr != nil {
		return nil, nil, err
	}
	get := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return get, cert.Leaf, nil
}

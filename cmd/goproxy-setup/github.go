package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/goproxy-setup/goproxy-setup/agent"
	"github.com/goproxy-setup/goproxy-setup/agent/ci"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

func init() { register(githubCmd{}) }

type githubCmd struct{}

func (githubCmd) Name() string { return "github" }
func (githubCmd) Synopsis() string {
	return "the GitHub Action's entry: setup, GITHUB_ENV/OUTPUT, job summary, masks (--report: stop and report)"
}

// ciFlags are the flags of the CI front ends (github, gitlab): the whole
// bootstrap plus step-ca enrolment (the enroll command's flags) and the
// report mode.
type ciFlags struct {
	setupFlags
	e         enrollFlags
	report    bool
	statsFile string
}

func (c *ciFlags) register(fs *flag.FlagSet) {
	c.setupFlags.register(fs)
	c.e.register(fs)
	fs.BoolVar(&c.report, "report", false, "stop the agent started earlier in this job and report its stats; fail when fetches failed after setup")
	fs.StringVar(&c.statsFile, "stats-file", "", "where the agent keeps a secret-free snapshot of its stats, for a report step that runs where the agent is gone (gitlab default: $CI_PROJECT_DIR.tmp/goproxy-setup-$CI_JOB_ID/stats.json, in the build volume that GitLab's docker executor shares between the script's and after_script's containers, else $CI_PROJECT_DIR/.goproxy-setup-stats-$CI_JOB_ID/stats.json)")
}

// enroll returns the enrolment config, nil without --ca-url. Without
// --token or --oidc the CI's own OIDC token (provider oidc) is used.
func (c *ciFlags) enroll(oidc string) (*tlsauth.EnrollConfig, error) {
	if c.e.caURL != "" && (c.clientCert != "" || c.clientKey != "") {
		return nil, usageErrorf("--ca-url enrols for a client certificate: drop --client-cert/--client-key (inputs client-cert, client-key), or drop --ca-url")
	}
	if c.e.caURL != "" && c.e.token == "" && c.e.oidc == "" {
		c.e.oidc = oidc
	}
	return c.e.config()
}

// runFrontEnd runs a CI front end's step: the report (--report) or the
// setup, with the logger writing through the front end's redactor. The
// returned error is redacted too: main prints it, and outside GitHub
// nothing masks it.
func runFrontEnd(ctx context.Context, fe ci.FrontEnd, f *ciFlags, oidc string, stderr io.Writer) error {
	if f.report {
		return fe.Redactor().Error(agent.ReportFrontEnd(ctx, fe, f.stateDir, f.statsFile))
	}
	enroll, err := f.enroll(oidc)
	if err != nil {
		return err
	}
	log := ci.RedactingWriter(stderr, fe.Redactor())
	cfg := f.config()
	cfg.Enroll = enroll
	cfg.StatsFile = f.statsFile
	cfg.Logger = newLoggerTo("goproxy-setup", &f.commonFlags, stderr, log)
	cfg.Progress = log
	if enroll != nil {
		enroll.Logger = cfg.Logger.Named("enroll")
	}
	return fe.Redactor().Error(agent.RunFrontEnd(ctx, fe, cfg))
}

func (githubCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("github", flag.ContinueOnError)
	var f ciFlags
	f.register(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	gh, err := ci.NewGitHub(stdout, os.Getenv)
	if err != nil {
		return err
	}
	// Mask what the step was given before anything can print it.
	if err := gh.Mask(f.e.token, os.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")); err != nil {
		return err
	}
	return runFrontEnd(ctx, gh, &f, tlsauth.OIDCGitHub, stderr)
}

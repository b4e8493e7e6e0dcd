package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent"
	"github.com/goproxy-setup/goproxy-setup/agent/ci"
	"github.com/goproxy-setup/goproxy-setup/agent/diagnose"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
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
	e      enrollFlags
	report bool
}

func (c *ciFlags) register(fs *flag.FlagSet) {
	c.setupFlags.register(fs)
	c.e.register(fs)
	fs.BoolVar(&c.report, "report", false, "stop the agent started earlier in this job and report its stats; fail when fetches failed after setup")
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

// outcome converts the bootstrap's result for the CI adapters.
func outcome(res *agent.Result, err error) *ci.Outcome {
	o := &ci.Outcome{Err: err}
	if res == nil {
		return o
	}
	o.Env = make([]ci.EnvVar, len(res.Env))
	for i, v := range res.Env {
		o.Env[i] = ci.EnvVar{Name: v.Name, Value: v.Value}
	}
	o.Secrets = res.Secrets
	o.Upstream = res.Upstreams
	o.StateDir = res.StateDir
	o.Addr = res.Addr
	o.Endpoints = res.Endpoints
	o.Warnings = res.Warnings
	o.ReportPath = res.ReportPath
	if w := res.Warm; w != nil {
		o.Warm = &ci.Warm{Modules: w.Modules, Hits: w.Hits, Fetched: w.Fetched, Bytes: w.Bytes, Duration: time.Duration(w.Seconds * float64(time.Second))}
	}
	if res.Report != nil {
		o.Diagnosis = diagnosis{res.Report}
	}
	return o
}

// withLatency adds the agent's upstream latency after a successful setup.
func withLatency(ctx context.Context, o *ci.Outcome) {
	if o.Err != nil || o.StateDir == "" {
		return
	}
	if s, err := agent.Status(ctx, o.StateDir); err == nil && s.Requests > 0 {
		l := ciStats(s).Latency
		o.Latency = &l
	}
}

// ciStats converts the agent's stats for the CI adapters.
func ciStats(s *agent.Stats) *ci.Stats {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	return &ci.Stats{
		Requests:         s.Requests,
		Bytes:            s.Bytes,
		ErrorsByLayer:    s.ErrorsByLayer,
		FailedAfterSetup: int(s.FailedAfterSetup),
		Latency:          ci.Latency{P50: ms(s.LatencyP50), P90: ms(s.LatencyP90), P99: ms(s.LatencyP99)},
		Diagnoses:        s.Diagnoses,
	}
}

// diagnosis adapts a diagnose.Report to ci.Diagnosis.
type diagnosis struct{ r *diagnose.Report }

func (d diagnosis) Verdict() (string, string)       { return d.r.Verdict.Layer, d.r.Verdict.Summary }
func (d diagnosis) WriteMarkdown(w io.Writer) error { return diagnose.WriteMarkdown(w, d.r) }
func (d diagnosis) WriteText(w io.Writer) error     { return diagnose.WriteText(w, d.r, false) }
func (d diagnosis) WriteAnnotations(w io.Writer) error {
	return diagnose.WriteGitHubAnnotations(w, d.r)
}
func (d diagnosis) WriteJUnit(w io.Writer) error { return diagnose.WriteJUnit(w, d.r) }

// redactErr returns err with the secrets red knows replaced, keeping its
// kind for the exit code: main prints the error, and outside GitHub nothing
// masks it.
func redactErr(err error, red *ci.Redactor) error {
	if err == nil {
		return nil
	}
	msg := red.String(err.Error())
	if msg == err.Error() {
		return err
	}
	return errkind.Mark(errkind.Of(err), errors.New(msg))
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
	if f.report {
		return redactErr(githubReport(ctx, gh, f.stateDir, stderr), gh.Redactor())
	}
	cleanup, err := materializePEM(gh, &f.clientCert, &f.clientKey)
	if err != nil {
		return err
	}
	defer cleanup()
	enroll, err := f.enroll(tlsauth.OIDCGitHub)
	if err != nil {
		return err
	}
	log := ci.RedactingWriter(stderr, gh.Redactor())
	cfg := f.config()
	cfg.Enroll = enroll
	cfg.Logger = newLogger("goproxy-setup", &f.commonFlags, log)
	cfg.Progress = log
	if enroll != nil {
		enroll.Logger = cfg.Logger.Named("enroll")
	}
	if err := gh.Group("goproxy-setup: start the agent and warm the module cache"); err != nil {
		return err
	}
	res, serr := agent.Setup(ctx, cfg)
	// Secrets first: the group's end and everything after may show them.
	if res != nil {
		if err := gh.Mask(res.Secrets...); err != nil {
			return err
		}
	}
	if err := gh.EndGroup(); err != nil {
		return err
	}
	o := outcome(res, serr)
	withLatency(ctx, o)
	perr := gh.Publish(o)
	return redactErr(errors.Join(serr, perr), gh.Redactor())
}

// githubReport is `github --report`: stop the agent, put its stats in the
// log and the job summary, fail when fetches failed after setup. A job
// whose setup never started an agent gets a warning, not a second failure.
func githubReport(ctx context.Context, gh *ci.GitHub, stateDir string, stderr io.Writer) error {
	if stateDir == "" {
		stateDir = agent.DefaultStateDir()
	}
	s, err := agent.Stop(ctx, stateDir)
	if err != nil {
		if _, serr := os.Stat(stateDir + "/" + agent.StateFile); errors.Is(serr, fs.ErrNotExist) {
			return gh.Annotate(ci.Warning, "goproxy-setup report", fmt.Sprintf("no agent to report on in %s: the setup step did not start one", stateDir))
		}
		return fmt.Errorf("stop the agent: %w", err)
	}
	cs := ciStats(s)
	if err := gh.Group("goproxy-setup: agent stats"); err != nil {
		return err
	}
	werr := ci.WriteStatsText(ci.RedactingWriter(stderr, gh.Redactor()), cs, gh.Redactor())
	if err := gh.EndGroup(); err != nil {
		return err
	}
	return errors.Join(werr, gh.PublishStats(cs))
}

// materializePEM lets the client-cert and client-key inputs hold PEM
// content (a secret passed straight through) as well as paths: content is
// masked first, then written to a 0600 file in a 0700 directory under
// RUNNER_TEMP, and the flag is pointed at it. The returned cleanup removes
// the files once Setup has handed the identity to the agent.
func materializePEM(gh *ci.GitHub, cert, key *string) (func(), error) {
	isPEM := func(v string) bool { return strings.HasPrefix(strings.TrimSpace(v), "-----BEGIN ") }
	if !isPEM(*cert) && !isPEM(*key) {
		return func() {}, nil
	}
	if isPEM(*key) {
		if err := gh.Mask(*key); err != nil {
			return nil, err
		}
	}
	base := os.Getenv("RUNNER_TEMP")
	if base == "" {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "goproxy-setup-identity-")
	if err != nil {
		return nil, fmt.Errorf("write the client identity from the inputs: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	for _, f := range []struct {
		v    *string
		name string
	}{{cert, "client.crt"}, {key, "client.key"}} {
		if !isPEM(*f.v) {
			continue
		}
		path := filepath.Join(dir, f.name)
		if err := ci.WriteFileAtomic(path, []byte(strings.TrimSpace(*f.v)+"\n"), 0o600); err != nil {
			cleanup()
			return nil, fmt.Errorf("write the client identity from the inputs: %w", err)
		}
		*f.v = path
	}
	return cleanup, nil
}

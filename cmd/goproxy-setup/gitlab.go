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

	"github.com/goproxy-setup/goproxy-setup/agent"
	"github.com/goproxy-setup/goproxy-setup/agent/ci"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

func init() { register(gitlabCmd{}) }

type gitlabCmd struct{}

func (gitlabCmd) Name() string { return "gitlab" }
func (gitlabCmd) Synopsis() string {
	return "the GitLab template's entry: setup, export lines on stdout, dotenv and JUnit report (--report: stop and report)"
}

func (gitlabCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gitlab", flag.ContinueOnError)
	var f ciFlags
	f.register(fs)
	dotenv := fs.String("dotenv", "", "dotenv artifact to write (relative to CI_PROJECT_DIR; default goproxy-setup.env in the state dir)")
	junit := fs.String("junit", "", "JUnit report to write (relative to CI_PROJECT_DIR; default goproxy-setup.junit.xml in the state dir)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	gl := ci.NewGitLab(stderr, nil)
	// GitLab masks only the variables defined in its settings; the
	// adapter redacts everything else it prints.
	gl.Redactor().Add(f.e.token, os.Getenv(f.e.oidcTokenVar))
	if f.report {
		return redactErr(gitlabReport(ctx, gl, f.stateDir), gl.Redactor())
	}
	enroll, err := f.enroll(tlsauth.OIDCGitLab)
	if err != nil {
		return err
	}
	log := ci.RedactingWriter(stderr, gl.Redactor())
	cfg := f.config()
	cfg.Enroll = enroll
	cfg.Logger = newLogger("goproxy-setup", &f.commonFlags, log)
	cfg.Progress = log
	if enroll != nil {
		enroll.Logger = cfg.Logger.Named("enroll")
	}
	if err := gl.SectionStart("goproxy_setup", "goproxy-setup: start the agent and warm the module cache", true); err != nil {
		return err
	}
	res, serr := agent.Setup(ctx, cfg)
	if res != nil {
		gl.Redactor().Add(res.Secrets...)
	}
	if err := gl.SectionEnd("goproxy_setup"); err != nil {
		return err
	}
	o := outcome(res, serr)
	withLatency(ctx, o)
	stateDir := o.StateDir
	if stateDir == "" {
		stateDir = agent.DefaultStateDir()
	}
	project := os.Getenv("CI_PROJECT_DIR")
	dotenvPath := ci.ResolvePath(*dotenv, project, ".")
	if dotenvPath == "" {
		dotenvPath = filepath.Join(stateDir, "goproxy-setup.env")
	}
	junitPath := ci.ResolvePath(*junit, project, ".")
	if junitPath == "" {
		junitPath = filepath.Join(stateDir, "goproxy-setup.junit.xml")
	}
	perr := gl.Publish(stdout, o, dotenvPath, junitPath)
	return redactErr(errors.Join(serr, perr), gl.Redactor())
}

// gitlabReport is `gitlab --report` (the template's after_script): stop
// the agent and print its stats in a section; fail when fetches failed after
// setup.
func gitlabReport(ctx context.Context, gl *ci.GitLab, stateDir string) error {
	if stateDir == "" {
		stateDir = agent.DefaultStateDir()
	}
	s, err := agent.Stop(ctx, stateDir)
	if err != nil {
		if _, serr := os.Stat(filepath.Join(stateDir, agent.StateFile)); errors.Is(serr, fs.ErrNotExist) {
			return gl.WriteLog(fmt.Sprintf("goproxy-setup: no agent to report on in %s: the setup did not start one\n", stateDir))
		}
		return fmt.Errorf("stop the agent: %w", err)
	}
	cs := ciStats(s)
	if err := gl.SectionStart("goproxy_setup_stats", "goproxy-setup: agent stats", cs.FailedAfterSetup == 0); err != nil {
		return err
	}
	werr := ci.WriteStatsText(gl.Log(), cs, gl.Redactor())
	if err := errors.Join(werr, gl.SectionEnd("goproxy_setup_stats")); err != nil {
		return err
	}
	if cs.FailedAfterSetup > 0 {
		return errkind.Mark(errkind.Unreachable, fmt.Errorf("%d module fetches failed after setup; the agent log in %s names each one", cs.FailedAfterSetup, stateDir))
	}
	return nil
}

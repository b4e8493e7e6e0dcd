package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/goproxy-setup/goproxy-setup/agent/ci"
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
	project := os.Getenv("CI_PROJECT_DIR")
	gl := ci.NewGitLab(ci.GitLabConfig{
		Log:    stderr,
		Stdout: stdout,
		Dotenv: ci.ResolvePath(*dotenv, project, "."),
		JUnit:  ci.ResolvePath(*junit, project, "."),
		Getenv: os.Getenv,
	})
	// GitLab masks only the variables defined in its settings; the
	// adapter redacts everything else it prints.
	gl.Mask(f.e.token, os.Getenv(f.e.oidcTokenVar))
	return runFrontEnd(ctx, gl, &f, tlsauth.OIDCGitLab, stderr)
}

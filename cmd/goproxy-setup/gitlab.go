package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"

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
	if f.statsFile == "" {
		f.statsFile = gitlabStatsFile(f.report)
	}
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
	if f.report && f.clientKey != "" && ci.IsFileVariable(f.clientKey, os.Getenv) {
		// GitLab wrote the key's file variable again for after_script (a
		// new container in the docker executor): the report needs no key.
		if err := ci.RemoveFileVariable(f.clientKey); err != nil {
			return err
		}
	}
	return runFrontEnd(ctx, gl, &f, tlsauth.OIDCGitLab, stderr)
}

// gitlabStatsFile picks the default stats snapshot (ci.GitLabStatsFiles):
// for setup the first whose parent directory exists or can be made, for
// the report the first that exists.
func gitlabStatsFile(report bool) string {
	for _, f := range ci.GitLabStatsFiles(os.Getenv) {
		if report {
			if _, err := os.Stat(f); err == nil {
				return f
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Dir(f)), 0o755); err == nil {
			return f
		}
	}
	return ""
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent"
	"github.com/goproxy-setup/goproxy-setup/agent/ci"
	"github.com/goproxy-setup/goproxy-setup/agent/supervisor"
)

func init() { register(runCmd{}) }

type runCmd struct{}

func (runCmd) Name() string { return "run" }
func (runCmd) Synopsis() string {
	return "start the agent in the background, warm the cache, print the env to export"
}

// setupFlags are the flags of the commands that run the whole bootstrap
// (run, github, gitlab).
type setupFlags struct {
	commonFlags
	warm        bool
	goSums      stringList
	concurrency int
	workDir     string
	agentUser   string
	agentUID    int
	agentDir    string
	jobUser     string
}

func (s *setupFlags) register(fs *flag.FlagSet) {
	s.commonFlags.register(fs)
	fs.BoolVar(&s.warm, "warm", true, "warm GOMODCACHE from go.sum after starting the agent")
	fs.Var(&s.goSums, "go-sum", "go.sum or go.work.sum file to warm for; the go.mod or go.work next to it is loaded as cmd/go loads it (repeatable; default: the module or workspace in the working directory)")
	fs.IntVar(&s.concurrency, "concurrency", 0, "parallel fetches while warming (0 chooses)")
	fs.StringVar(&s.workDir, "working-directory", ".", "directory whose go.sum and go.work.sum are warmed by default")
	fs.StringVar(&s.agentUser, "agent-user", "", "dedicated user the agent runs as when root is available (default: the policy's, goproxy-agent)")
	fs.IntVar(&s.agentUID, "agent-uid", 0, "uid for the agent user when it is created (0: the system chooses)")
	fs.StringVar(&s.jobUser, "job-user", "", "user (name or uid) whose steps use the agent; it serves only that user and root (default: the user running this command)")
	fs.StringVar(&s.agentDir, "agent-dir", "", "the agent user's private directory for its key (default: <state-dir>/private)")
}

// config returns the bootstrap configuration of the flags (without
// enrolment, which each front end resolves with its own OIDC default).
func (s *setupFlags) config() agent.Config {
	var agentArgs []string
	if s.logLevel != "" {
		agentArgs = append(agentArgs, "--log-level", s.logLevel)
	}
	if s.logFormat != "" {
		agentArgs = append(agentArgs, "--log-format", s.logFormat)
	}
	return agent.Config{
		Upstream:    s.upstream.val,
		UpstreamSet: s.upstream.set,
		ClientCert:  s.clientCert,
		ClientKey:   s.clientKey,
		CACert:      s.caCert,
		Policy:      s.policy,
		StateDir:    s.stateDir,
		Timeout:     s.timeout,
		Warm:        s.warm,
		GoSums:      s.goSums,
		Concurrency: s.concurrency,
		WorkDir:     s.workDir,
		AgentArgs:   agentArgs,
		AgentUser:   s.agentUser,
		AgentUID:    s.agentUID,
		AgentDir:    s.agentDir,
		JobUser:     s.jobUser,
	}
}

func (runCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var s setupFlags
	s.register(fs)
	var e enrollFlags
	e.register(fs)
	format := fs.String("format", "shell", "output format of the variables: shell, dotenv or json")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if _, err := ci.ParseFormat(*format); err != nil {
		return err
	}
	cfg := s.config()
	enroll, err := e.config()
	if err != nil {
		return err
	}
	cfg.Enroll = enroll
	cfg.Logger = newLogger("goproxy-setup", &s.commonFlags, stderr)
	cfg.Progress = stderr
	if cfg.StateDir == "" {
		cfg.StateDir = supervisor.DefaultStateDir()
	}
	// Opened once: Setup works in it, and a failed run stops its agent
	// through the same handle.
	if cfg.Dir, err = supervisor.OpenStateDir(cfg.StateDir); err != nil {
		return err
	}
	defer cfg.Dir.Close()
	res, err := agent.Setup(ctx, cfg)
	if res != nil && res.ReportPath != "" {
		fmt.Fprintf(stderr, "goproxy-setup: diagnosis report: %s\n", res.ReportPath)
	}
	if err != nil {
		// No environment is printed, so nothing will use the agent: stop
		// it rather than leave it running after the caller gave up.
		if res != nil && res.PID != 0 {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			if _, serr := supervisor.Stop(stopCtx, cfg.Dir); serr != nil {
				cfg.Logger.Debug("stopping the agent after the failure", "error", serr)
			}
			cancel()
			fmt.Fprintf(stderr, "goproxy-setup: run failed: stopped the agent it started (pid %d); no environment printed\n", res.PID)
		}
		return err
	}
	for _, l := range res.Privilege {
		if !strings.HasPrefix(l, "warning: ") {
			fmt.Fprintf(stderr, "goproxy-setup: %s\n", l)
		}
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "goproxy-setup: warning: %s\n", w)
	}
	if res.Warm != nil {
		fmt.Fprintf(stderr, "goproxy-setup: warmed %d modules (%d cache hits) in %s\n", res.Warm.Modules, res.Warm.Hits, res.Elapsed.Round(1e6))
	}
	if len(res.Endpoints) > 0 {
		fmt.Fprintf(stderr, "goproxy-setup: egress endpoints the job needs: %s\n", strings.Join(res.Endpoints, " "))
	}
	return writeEnv(stdout, *format, res.Env)
}

// writeEnv prints the variables to export, GOPROXY first, validated so a
// value cannot smuggle a second assignment into an eval'd script.
func writeEnv(w io.Writer, format string, env []agent.EnvVar) error {
	f, err := ci.ParseFormat(format)
	if err != nil {
		return err
	}
	return ci.WriteEnv(w, f, env)
}

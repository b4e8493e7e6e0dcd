// Package agent owns the bootstrap: the ordered steps that give a CI job
// its module proxy — policy, identity, custody and least privilege, the
// detached loopback agent, the exported environment, warming the module
// cache, and the report. It only orchestrates; the work is done by the
// packages below it (proxy, upstream, warm, diagnose, privilege, tlsauth,
// policies).
package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/privilege"
	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/policies"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// EnvVar is one variable exported to the job.
type EnvVar = policies.EnvVar

// State is what the bootstrap records about a running agent in the state
// directory (agent.json, mode 0600). It holds the capability URL, so it is
// readable only by the job's user.
type State struct {
	PID     int       `json:"pid"`
	BaseURL string    `json:"base_url"`
	Addr    string    `json:"addr"`
	Started time.Time `json:"started"`
	Log     string    `json:"log"`
	// User is the user the agent runs as ("" when unseparated).
	User string `json:"user,omitempty"`
	// SetupFailures is the agent's failure count when setup finished;
	// failures beyond it happened in the job's own steps.
	SetupFailures int64 `json:"setup_failures"`
}

// StateFile is the name of the state file in the state directory.
const StateFile = "agent.json"

// DefaultStateDir returns the default state directory: under RUNNER_TEMP
// (GitHub), CI_BUILDS_DIR's parent temp (GitLab uses TMPDIR), or the user's
// cache directory.
func DefaultStateDir() string {
	for _, v := range []string{"RUNNER_TEMP", "GOPROXY_SETUP_TMP"} {
		if d := os.Getenv(v); d != "" {
			return filepath.Join(d, "goproxy-setup")
		}
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "goproxy-setup")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("goproxy-setup-%d", os.Getuid()))
}

// ReadState reads the state file of the agent in stateDir.
func ReadState(stateDir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, StateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("no agent in state dir %s: start one with 'goproxy-setup run --state-dir %s'", stateDir, stateDir))
		}
		return nil, fmt.Errorf("read agent state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read agent state %s: %w", filepath.Join(stateDir, StateFile), err)
	}
	return &s, nil
}

func writeState(stateDir string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, StateFile), b, 0o600)
}

// StartConfig configures Start.
type StartConfig struct {
	// Executable is the goproxy-setup binary to run as the agent
	// (os.Executable by default).
	Executable string
	// Args are the agent subcommand's flags (upstream, policy, timeout,
	// ca-cert, log-level…), passed through; never secrets.
	Args []string
	// StateDir holds agent.json and agent.log.
	StateDir string
	// Handoff is written to the agent's stdin.
	Handoff Handoff
	// RunAs is the user the agent drops to ("" for none). When Sudo is
	// set, the agent is started through 'sudo -n'.
	RunAs string
	Sudo  bool
	// ReadyTimeout bounds the wait for the agent to serve (15s default).
	ReadyTimeout time.Duration
	Logger       hclog.Logger
}

// Start starts the agent detached: its own session (setsid), stdin a pipe
// that carries the handoff and is then closed, stdout a pipe that carries
// one readiness line, stderr the log file in the state dir. A CI step that
// starts it therefore ends normally, and the agent outlives it. An agent
// already recorded in the state dir is stopped first.
func Start(ctx context.Context, cfg StartConfig) (*State, error) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("state dir: %w", err))
	}
	if old, err := ReadState(cfg.StateDir); err == nil {
		log.Info("replacing the agent already running for this state dir", "pid", old.PID)
		stopAgent(ctx, old)
	}
	exe := cfg.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
	}
	logPath := filepath.Join(cfg.StateDir, "agent.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open agent log: %w", err)
	}
	defer logf.Close()
	args := append([]string{"agent", "--handoff-stdin", "--ready-fd", "1"}, cfg.Args...)
	if cfg.RunAs != "" {
		args = append(args, "--run-as", cfg.RunAs)
	}
	name := exe
	if cfg.Sudo {
		args = append([]string{"-n", "--", exe}, args...)
		name = "sudo"
	}
	// Not CommandContext: the agent must outlive this process.
	cmd := exec.Command(name, args...)
	cmd.Env = agentEnv()
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := cmd.Start
	if cfg.RunAs != "" && !cfg.Sudo {
		// Started by root: no_new_privs from birth on every thread, so a
		// cgo build can drop as safely as a static one.
		start = func() error { return privilege.StartNoNewPrivs(cmd) }
	}
	if err := start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	// Reap it if it dies while we still run; its exit code is the kind of
	// its failure (see agentFailed).
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	hb, _ := json.Marshal(cfg.Handoff)
	_, werr := stdin.Write(hb)
	stdin.Close()
	if werr != nil {
		log.Debug("writing handoff failed", "error", werr)
	}
	timeout := cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	var ready string
	select {
	case ready = <-line:
	case <-time.After(timeout):
		cmd.Process.Kill()
		return nil, fmt.Errorf("agent did not serve within %s; its log: %s\n%s", timeout, logPath, tail(logPath))
	case <-ctx.Done():
		cmd.Process.Kill()
		return nil, ctx.Err()
	}
	addr, ok := strings.CutPrefix(ready, "ready ")
	if !ok {
		return nil, agentFailed(logPath, exited)
	}
	st := &State{PID: cmd.Process.Pid, Addr: addr, BaseURL: "http://" + addr + "/" + cfg.Handoff.Token, Started: time.Now(), Log: logPath, User: cfg.RunAs}
	if err := waitHealthy(ctx, st.BaseURL, timeout); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("agent announced %s but does not answer: %w", addr, err)
	}
	if err := writeState(cfg.StateDir, st); err != nil {
		cmd.Process.Kill()
		return nil, err
	}
	cmd.Process.Release()
	return st, nil
}

// agentEnv is the agent's environment: the parent's minus anything that
// could carry a secret meant for the job (the agent gets its secrets on
// stdin only).
func agentEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "GOPROXY_SETUP_") && k != "GOPROXY_SETUP_LOG_LEVEL" && k != "GOPROXY_SETUP_LOG_FORMAT":
			continue
		case strings.HasPrefix(k, "ACTIONS_ID_TOKEN"), strings.HasPrefix(k, "INPUT_"), k == "GITHUB_TOKEN", k == "CI_JOB_TOKEN":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// agentFailed is the error of an agent that exited before serving. Its
// kind is the agent's exit code (the command maps the kind of its error to
// it; DESIGN.md, Contract: exit codes), never a guess from the log's text.
func agentFailed(logPath string, exited <-chan error) error {
	kind := errkind.Other
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			kind = kindOfExitCode(ee.ExitCode())
		}
	case <-time.After(5 * time.Second):
	}
	return errkind.Mark(kind, fmt.Errorf("agent failed to start; its log (%s) ends:\n%s", logPath, tail(logPath)))
}

// kindOfExitCode is the inverse of errkind.Kind.ExitCode where it is one
// to one (exit 1 is any other kind).
func kindOfExitCode(code int) errkind.Kind {
	for _, k := range []errkind.Kind{errkind.BadInput, errkind.Unreachable, errkind.Integrity} {
		if k.ExitCode() == code {
			return k
		}
	}
	return errkind.Other
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

var adminClient = &http.Client{Timeout: 10 * time.Second}

func waitHealthy(ctx context.Context, base string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+proxy.AdminPrefix+"health", nil)
		resp, err := adminClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return redact.Error(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stats are the agent's statistics plus what the bootstrap knows.
type Stats struct {
	proxy.Stats
	PID int `json:"pid"`
	// FailedAfterSetup counts upstream failures in the job's own steps.
	FailedAfterSetup int64 `json:"failed_after_setup"`
	// Diagnoses are the agent's latest diagnoses of failed upstreams.
	Diagnoses []string `json:"diagnoses,omitempty"`
}

// Status returns the running agent's statistics.
func Status(ctx context.Context, stateDir string) (*Stats, error) {
	st, err := ReadState(stateDir)
	if err != nil {
		return nil, err
	}
	return fetchStats(ctx, st)
}

func fetchStats(ctx context.Context, st *State) (*Stats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.BaseURL+"/"+proxy.AdminPrefix+"stats", nil)
	if err != nil {
		return nil, errors.New("agent state holds a malformed URL: run 'goproxy-setup run' again")
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		// The agent is a process on this machine: its silence is a local
		// fault (it crashed or was killed), not the upstream's.
		return nil, errkind.Mark(errkind.Local, fmt.Errorf("agent (pid %d) does not answer on %s: %w; it stopped or crashed: see its log %s, and start it again with 'goproxy-setup run'", st.PID, st.Addr, redact.Error(err), st.Log))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent stats: status %d", resp.StatusCode)
	}
	var s Stats
	if err := json.NewDecoder(resp.Body).Decode(&s.Stats); err != nil {
		return nil, fmt.Errorf("agent stats: %w", err)
	}
	s.PID = st.PID
	s.FailedAfterSetup = s.Failures - st.SetupFailures
	if s.Failures > 0 {
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.BaseURL+"/"+proxy.AdminPrefix+"diagnoses", nil); err == nil {
			if resp, err := adminClient.Do(req); err == nil {
				json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&s.Diagnoses)
				resp.Body.Close()
			}
		}
	}
	return &s, nil
}

// MarkSetupDone records the agent's current failure count, so that Stop
// reports only failures of the job's own steps.
func MarkSetupDone(ctx context.Context, stateDir string) error {
	st, err := ReadState(stateDir)
	if err != nil {
		return err
	}
	s, err := fetchStats(ctx, st)
	if err != nil {
		return err
	}
	st.SetupFailures = s.Failures
	return writeState(stateDir, st)
}

// Stop stops the agent recorded in stateDir and returns its final
// statistics.
func Stop(ctx context.Context, stateDir string) (*Stats, error) {
	st, err := ReadState(stateDir)
	if err != nil {
		return nil, err
	}
	s, serr := fetchStats(ctx, st)
	stopAgent(ctx, st)
	if err := os.Remove(filepath.Join(stateDir, StateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("remove agent state: %w", err)
	}
	return s, serr
}

// stopAgent asks the agent to stop through its admin endpoint (it may run
// as another user, so a signal from the job's user would not reach it) and
// falls back to SIGTERM.
func stopAgent(ctx context.Context, st *State) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.BaseURL+"/"+proxy.AdminPrefix+"stop", nil)
	if err == nil {
		if resp, err := adminClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	if p, err := os.FindProcess(st.PID); err == nil {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if p.Signal(syscall.Signal(0)) != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.Signal(syscall.SIGTERM)
	}
}

// IdentityPEM returns the PEM encoding of a certificate chain and key, for
// the handoff.
func IdentityPEM(cert tls.Certificate) (certPEM, keyPEM []byte, err error) {
	var b bytes.Buffer
	for _, der := range cert.Certificate {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	keyPEM, err = tlsauth.EncodeKey(cert.PrivateKey)
	return b.Bytes(), keyPEM, err
}

// Package supervisor is the bootstrap's side of the agent process: it
// starts the agent detached (Start: the handoff on its stdin, one readiness
// line on a pipe, its log in the state dir), asks it for its statistics
// (Status), and stops it (Stop) only once it has proven that the process is
// that agent (procid.go: start time, executable, nonce). It owns the state
// dir (StateDir: opened once, refusing links and other users' directories;
// agent.json, agent.log, the agent user's private directory) and speaks
// the protocol of agent/wire, which the agent process (agent/server) speaks
// from the other side; neither imports the other.
package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
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
	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// State is what the bootstrap records about a running agent in the state
// directory (agent.json, mode 0600). It holds the capability URL, so it is
// readable only by the job's user.
type State struct {
	PID     int       `json:"pid"`
	BaseURL string    `json:"base_url"`
	Addr    string    `json:"addr"`
	Started time.Time `json:"started"`
	Log     string    `json:"log"`
	// StartTime (clock ticks since boot, /proc/<pid>/stat), Exe and Nonce
	// identify the agent process: 'stop' and 'run' signal PID only when
	// all three still match (see verifyAgent).
	StartTime uint64 `json:"start_time"`
	Exe       string `json:"exe"`
	Nonce     string `json:"nonce"`
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

// NoAgentError is the error (errkind.BadInput) of a state dir that
// records no agent; it wraps the missing state file's error, so
// errors.Is(err, fs.ErrNotExist) holds.
type NoAgentError struct {
	Dir string
	Err error
}

func (e *NoAgentError) Error() string {
	return fmt.Sprintf("no agent in state dir %s: start one with 'goproxy-setup run --state-dir %s'", e.Dir, e.Dir)
}

// Unwrap returns the missing state file's error.
func (e *NoAgentError) Unwrap() error { return e.Err }

// ReadState reads the state file of the agent in the state dir; a state
// dir without one is a *NoAgentError.
func (d *StateDir) ReadState() (*State, error) {
	b, err := d.readFile(StateFile)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errkind.Mark(errkind.BadInput, &NoAgentError{Dir: d.path, Err: err})
		}
		return nil, fmt.Errorf("read agent state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read agent state %s: malformed (remove it)", d.File(StateFile)))
	}
	return &s, nil
}

func (d *StateDir) writeState(s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	// A temp file renamed over the name: a link planted there is
	// replaced, never followed.
	return d.WriteFile(StateFile, b, 0o600)
}

// StartConfig configures Start.
type StartConfig struct {
	// Executable is the goproxy-setup binary to run as the agent
	// (os.Executable by default).
	Executable string
	// Args are the agent subcommand's flags (policy, timeout, ca-cert,
	// log-level…), passed through; never secrets: ps shows them to every
	// local user.
	Args []string
	// Handoff is written to the agent's stdin: the token, identity,
	// upstream list and network settings. Start sets its Nonce.
	Handoff privilege.Secrets
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
// already recorded in the state dir is stopped first (when it is proven to
// be the agent; stale state is removed, never trusted), and key copies a
// crashed agent left behind are removed. d holds agent.json and agent.log.
func Start(ctx context.Context, d *StateDir, cfg StartConfig) (*State, error) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := d.CheckPrivate(); err != nil {
		return nil, err
	}
	if old, err := d.ReadState(); err == nil {
		log.Info("replacing the agent recorded for this state dir", "pid", old.PID)
		stopAgent(ctx, old, log)
	}
	if err := d.clean(ctx); err != nil {
		return nil, err
	}
	exe := cfg.Executable
	var err error
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	logPath := d.File("agent.log")
	logf, err := d.open("agent.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open agent log: %w", err)
	}
	defer logf.Close()
	handoff := cfg.Handoff
	if handoff.Nonce, err = proxy.NewToken(); err != nil {
		return nil, err
	}
	args := append([]string{wire.Command, "--" + wire.HandoffFlag, "--" + wire.ReadyFDFlag, "1"}, cfg.Args...)
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
	// Our own pipe, not StdoutPipe: Wait (run below to reap the agent)
	// closes a StdoutPipe, racing the read of the agent's last line.
	stdout, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	cmd.Stdout = readyW
	start := cmd.Start
	if cfg.RunAs != "" && !cfg.Sudo {
		// Started by root: no_new_privs from birth on every thread, so a
		// cgo build can drop as safely as a static one.
		start = func() error { return privilege.StartNoNewPrivs(cmd) }
	}
	err = start()
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	// Reap it if it dies while we still run; its exit status backs up the
	// kind its readiness line names (see agentFailed).
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = cmd.Wait(); close(exited) }()
	werr := privilege.WriteSecrets(stdin, handoff)
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
		line <- s
	}()
	var ready string
	select {
	case ready = <-line:
	case <-time.After(timeout):
		cmd.Process.Kill()
		return nil, fmt.Errorf("agent did not serve within %s; its log: %s\n%s", timeout, logPath, d.tail("agent.log"))
	case <-ctx.Done():
		cmd.Process.Kill()
		return nil, ctx.Err()
	}
	addr, ok := wire.ParseReady(ready)
	if !ok {
		// The agent says why before it exits: let it finish its log.
		code := -1
		select {
		case <-exited:
			var ee *exec.ExitError
			if errors.As(exitErr, &ee) {
				code = ee.ExitCode()
			}
		case <-time.After(5 * time.Second):
		}
		return nil, agentFailed(ready, code, logPath, d.tail("agent.log"))
	}
	st := &State{PID: cmd.Process.Pid, Addr: addr, BaseURL: "http://" + addr + "/" + handoff.Token, Started: time.Now(), Log: logPath, User: cfg.RunAs, Exe: exe, Nonce: handoff.Nonce}
	if err := waitHealthy(ctx, st.BaseURL, timeout); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("agent announced %s but does not answer: %w", addr, err)
	}
	// The agent's own pid (through sudo it is sudo's child), its start
	// time and executable: what 'stop' checks before it signals.
	id, err := agentIdentity(ctx, st)
	if err != nil || id.Nonce != handoff.Nonce {
		cmd.Process.Kill()
		return nil, fmt.Errorf("agent on %s does not prove its identity: %v", addr, err)
	}
	st.PID = id.PID
	if st.StartTime, err = procStartTime(st.PID); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("agent process %d: %w", st.PID, err)
	}
	if e, err := procExe(st.PID); err == nil {
		st.Exe = e
	}
	if err := d.writeState(st); err != nil {
		cmd.Process.Kill()
		return nil, err
	}
	cmd.Process.Release()
	return st, nil
}

// clean removes what a previous agent left: agent.json and the private
// directory with its key copies. The directory belongs to the agent user
// when the agent was separated; a job user with sudo removes it through
// 'sudo -n'.
func (d *StateDir) clean(ctx context.Context) error {
	if err := d.remove(StateFile); err != nil {
		return fmt.Errorf("remove stale state: %w", err)
	}
	err := d.removePrivate()
	if err != nil && errkind.Of(err) != errkind.BadInput && os.Geteuid() != 0 && errors.Is(err, os.ErrPermission) {
		if privilege.Detect(ctx) == privilege.Sudo {
			err = privilege.RemoveAsRoot(ctx, d.File(PrivateDirName))
		}
	}
	if err != nil {
		if errkind.Of(err) == errkind.BadInput {
			return err
		}
		return errkind.Mark(errkind.Local, fmt.Errorf("remove the agent's key copies: %w (remove %s as root)", err, d.File(PrivateDirName)))
	}
	return nil
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
		case k == "GOPROXY", k == "GONOSUMDB", k == "GOPRIVATE", k == "GONOPROXY", k == "GOAUTH", k == "GOFLAGS":
			// An earlier run's exported GOPROXY holds a capability URL.
			continue
		}
		out = append(out, kv)
	}
	return out
}

// agentFailed is the error of an agent that exited before serving. Its
// kind is the one its readiness line names or, when it died without one,
// the one its exit code means (the command maps a kind to its exit code:
// docs/architecture.md, the failure model), never a guess from the log's text. code is -1
// when unknown.
func agentFailed(ready string, code int, logPath, tail string) error {
	kind, ok := wire.FailKind(ready)
	if !ok {
		for _, k := range []errkind.Kind{errkind.BadInput, errkind.Unreachable, errkind.Integrity} {
			if k.ExitCode() == code {
				kind = k
			}
		}
	}
	return errkind.Mark(kind, fmt.Errorf("agent failed to start; its log (%s) ends:\n%s", logPath, tail))
}

// tail returns the last lines of name in the state dir.
func (d *StateDir) tail(name string) string {
	b, err := d.readFile(name)
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
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, wire.AdminURL(base, wire.Health), nil)
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

// Status returns the statistics of the agent running for d.
func Status(ctx context.Context, d *StateDir) (*Stats, error) {
	st, err := d.ReadState()
	if err != nil {
		return nil, err
	}
	return fetchStats(ctx, st)
}

func fetchStats(ctx context.Context, st *State) (*Stats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wire.AdminURL(st.BaseURL, wire.Stats), nil)
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
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, wire.AdminURL(st.BaseURL, wire.Diagnoses), nil); err == nil {
			if resp, err := adminClient.Do(req); err == nil {
				json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&s.Diagnoses)
				resp.Body.Close()
			}
		}
	}
	return &s, nil
}

// MarkSetupDone records the agent's current failure count, so that Stop
// reports only failures of the job's own steps, and returns the agent's
// statistics at that point.
func MarkSetupDone(ctx context.Context, d *StateDir) (*Stats, error) {
	st, err := d.ReadState()
	if err != nil {
		return nil, err
	}
	s, err := fetchStats(ctx, st)
	if err != nil {
		return nil, err
	}
	st.SetupFailures = s.Failures
	return s, d.writeState(st)
}

// Stop stops the agent recorded in d, removes its state and its key
// copies, and returns its final statistics. A process that cannot be
// proven to be the agent is not signalled.
func Stop(ctx context.Context, d *StateDir) (*Stats, error) {
	st, err := d.ReadState()
	if err != nil {
		var none *NoAgentError
		if errors.As(err, &none) {
			return nil, err
		}
		// A malformed state file: still remove the key copies.
		return nil, errors.Join(err, d.clean(ctx))
	}
	v, why := verifyAgent(ctx, st)
	var s *Stats
	var serr error
	switch v {
	case ours:
		s, serr = fetchStats(ctx, st)
		stopVerified(ctx, st)
	case gone:
		serr = errkind.Mark(errkind.Local, fmt.Errorf("the agent recorded in %s is not running (%s): its state and key copies are removed; start one with 'goproxy-setup run'", d.File(StateFile), why))
	default:
		serr = errkind.Mark(errkind.Local, fmt.Errorf("not stopping process %d: %s; the state in %s is removed, the process is left alone", st.PID, why, d.path))
	}
	return s, errors.Join(serr, d.clean(ctx))
}

// stopAgent stops the agent st records, after proving that the process is
// that agent (verifyAgent): through its admin endpoint (it may run as
// another user, so a signal from the job's user would not reach it), then
// SIGTERM if it is still the same process after 5 s. Anything else is
// left alone.
func stopAgent(ctx context.Context, st *State, log hclog.Logger) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if v, why := verifyAgent(ctx, st); v != ours {
		log.Warn("not signalling the process recorded in the state dir", "pid", st.PID, "reason", why)
		return
	}
	stopVerified(ctx, st)
}

// stopVerified is stopAgent for an agent verifyAgent has just proven.
func stopVerified(ctx context.Context, st *State) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wire.AdminURL(st.BaseURL, wire.Stop), nil)
	if err == nil {
		if resp, err := adminClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if t, err := procStartTime(st.PID); err != nil || t != st.StartTime {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if t, err := procStartTime(st.PID); err == nil && t == st.StartTime {
		syscall.Kill(st.PID, syscall.SIGTERM)
	}
}

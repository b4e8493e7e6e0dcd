package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// requireRoot fails in CI (which runs as root, so this can only mean a
// broken setup) and skips a developer's unprivileged run.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the privilege tests need root; CI runs as root")
	}
	t.Skip("needs root (run .ci/test as root, as CI does)")
}

// TestRunSeparatesTheAgent: run as root, the bootstrap starts the agent as
// its own user; the job's user can fetch modules through it but can read
// neither the key nor the agent's memory or environment, and the agent
// cannot become root again.
func TestRunSeparatesTheAgent(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	stack := testenv.StartMTLSStack(t, e2eModules)
	_, uid, gid := testenv.LocalUser(t, "gpsjob")
	state := filepath.Join(t.TempDir(), "state")
	// The job's files (its key inputs included) belong to the job; only
	// the agent's copy of the key is out of the job's reach.
	stdout, stderr, code := runCLI(t, nil, "run", "--format", "json", "--warm=false",
		"--upstream", stack.URL, "--client-cert", stack.CertFile, "--client-key", stack.KeyFile,
		"--ca-cert", stack.CAFile, "--state-dir", state, "--agent-user", "goproxy-agent",
		"--job-user", strconv.Itoa(uid))
	if code != 0 {
		t.Fatalf("run exit %d\n%s", code, stderr)
	}
	t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
	if !strings.Contains(stderr, "agent runs as goproxy-agent") {
		t.Errorf("run does not say which user the agent runs as:\n%s", stderr)
	}
	gp := parseJSONEnv(t, stdout)["GOPROXY"]
	var st struct{ PID int }
	b, err := os.ReadFile(filepath.Join(state, "agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &st)
	status, err := os.ReadFile("/proc/" + strconv.Itoa(st.PID) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(l, ":")
		fields[k] = strings.Join(strings.Fields(v), " ")
	}
	agentUID := strings.Fields(fields["Uid"])[0]
	if agentUID == "0" || agentUID == strconv.Itoa(uid) || fields["Groups"] != "" || fields["NoNewPrivs"] != "1" || fields["CapEff"] != "0000000000000000" {
		t.Errorf("agent status: Uid %q Groups %q NoNewPrivs %q CapEff %q; want a dedicated uid, no groups, no_new_privs, no capabilities", fields["Uid"], fields["Groups"], fields["NoNewPrivs"], fields["CapEff"])
	}
	if fields["Uid"] != strings.Repeat(agentUID+" ", 3)+agentUID {
		t.Errorf("agent Uid line %q: real, effective, saved and fs uid must all be the agent's", fields["Uid"])
	}

	// As the job's user: the agent's private files and process are out of
	// reach.
	asJob := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(name, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		c.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}
		return c
	}
	for _, p := range []string{
		filepath.Join(state, "private", "client.key"),
		filepath.Join(state, "private"),
		"/proc/" + strconv.Itoa(st.PID) + "/environ",
		"/proc/" + strconv.Itoa(st.PID) + "/mem",
	} {
		out, err := asJob("cat", p).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Errorf("job user reading %s: %v %q, want permission denied", p, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(state, "private", "client.key")); err != nil {
		t.Errorf("the agent's key copy is missing: %v", err)
	}

	// …but the job's go command works through the agent.
	work := t.TempDir()
	testenv.WriteConsumer(t, work, e2eModules)
	modcache := t.TempDir()
	for _, d := range []string{work, modcache} {
		filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
			if err == nil {
				os.Lchown(p, uid, gid)
			}
			return nil
		})
		os.Chmod(filepath.Dir(d), 0o755)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	dl := asJob(goBin, "mod", "download")
	dl.Dir = work
	gocache := filepath.Join(modcache, ".gocache")
	dl.Env = append(dl.Env, "GOPROXY="+gp, "GOMODCACHE="+modcache, "GOCACHE="+gocache, "GOSUMDB=off", "GOFLAGS=-mod=mod -modcacherw", "GOTOOLCHAIN=local", "GOENV=off")
	if out, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("job user's go mod download through the agent: %v\n%s", err, out)
	}
	// The agent cannot signal… and the job cannot signal the agent.
	if err := asJob("kill", "-0", strconv.Itoa(st.PID)).Run(); err == nil {
		t.Errorf("the job user can signal the agent")
	}
	var ee *exec.ExitError
	if err := asJob("true").Run(); errors.As(err, &ee) {
		t.Fatalf("sanity: running as the job user fails: %v", err)
	}
}

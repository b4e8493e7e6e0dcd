package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// agentState reads the pid and start time from the state dir's agent.json.
func agentState(t *testing.T, state string) (pid int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ PID int }
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.PID
}

// clientFiles writes a throwaway client certificate and key.
func clientFiles(t *testing.T) (cert, key string) {
	t.Helper()
	leaf := testenv.NewCA(t).Issue(t, testenv.CertSpec{CommonName: "job", Client: true})
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(cert, leaf.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, leaf.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestUpstreamPasswordOffCommandLines: 'run --upstream
// https://user:CANARY@host' puts the password in no process's command line
// or environment (what ps and /proc show): it travels in the handoff. The
// agent did receive the list (its log names the host, redacted).
func TestUpstreamPasswordOffCommandLines(t *testing.T) {
	t.Parallel()
	const canary = "CANARYpw7c1e"
	state := filepath.Join(t.TempDir(), "state")
	_, stderr, code := runCLI(t, nil, "run", "--format", "json", "--warm=false",
		"--upstream", "https://user:"+canary+"@127.0.0.1:9", "--state-dir", state)
	if code != 0 {
		t.Fatalf("run exit %d\n%s", code, stderr)
	}
	t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
	pid := agentState(t, state)
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		t.Fatalf("agent pid %d: %v", pid, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	scanned := 0
	for _, p := range procs {
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join(p, f))
			if err != nil {
				continue
			}
			scanned++
			if bytes.Contains(b, []byte(canary)) {
				t.Errorf("%s/%s holds the upstream password: %q", p, f, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			}
		}
	}
	if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !bytes.Contains(cl, []byte("agent")) {
		t.Errorf("agent cmdline %q, %v: the scan missed the agent", cl, err)
	}
	for _, f := range []string{"agent.json", "agent.log"} {
		b, _ := os.ReadFile(filepath.Join(state, f))
		if bytes.Contains(b, []byte(canary)) {
			t.Errorf("%s holds the upstream password", f)
		}
	}
	if strings.Contains(stderr, canary) {
		t.Errorf("run's output holds the upstream password")
	}
	if log, _ := os.ReadFile(filepath.Join(state, "agent.log")); !bytes.Contains(log, []byte("127.0.0.1:9")) {
		t.Errorf("the agent's log does not name the upstream from the handoff:\n%s", log)
	}
	t.Logf("scanned %d cmdline/environ files of %d processes", scanned, len(procs))
}

// TestStopSparesUnrelatedProcess: an agent.json naming an unrelated live
// process (a stale state dir after a crash or reboot, or a hand-written
// one) makes neither 'stop' nor 'run' signal it; the state is removed.
//
// No wait for a late signal: a command's signals are queued before it
// exits, and a fatal one ends the process with that signal even if
// another follows. So once the command (and the agent 'run' started) has
// exited, the test ends the process with a signal of its own; the wait
// status names the signal that came first.
func TestStopSparesUnrelatedProcess(t *testing.T) {
	t.Parallel()
	self := binary(t)
	for _, tc := range []struct {
		name string
		// state is agent.json for the process pid, started at tick start,
		// running exe.
		state func(pid int, start, exe string) string
	}{
		{"pid only", func(pid int, _, _ string) string {
			return fmt.Sprintf(`{"pid": %d, "base_url": "http://127.0.0.1:1/x", "addr": "127.0.0.1:1"}`, pid)
		}},
		{"start time and exe of the process", func(pid int, start, exe string) string {
			return fmt.Sprintf(`{"pid": %d, "start_time": %s, "exe": %q, "nonce": "n", "base_url": "http://127.0.0.1:1/x", "addr": "127.0.0.1:1"}`, pid, start, exe)
		}},
		{"our exe claimed", func(pid int, start, _ string) string {
			return fmt.Sprintf(`{"pid": %d, "start_time": %s, "exe": %q, "nonce": "n", "base_url": "http://127.0.0.1:1/x", "addr": "127.0.0.1:1"}`, pid, start, self)
		}},
	} {
		for _, cmd := range []string{"stop", "run"} {
			sleep := exec.Command("sleep", "120")
			if err := sleep.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
			pid := sleep.Process.Pid
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				t.Fatal(err)
			}
			startTime := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))[19]
			sleepExe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			state := t.TempDir()
			if err := os.WriteFile(filepath.Join(state, "agent.json"), []byte(tc.state(pid, startTime, sleepExe)), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{cmd, "--state-dir", state}
			if cmd == "run" {
				args = append(args, "--warm=false", "--upstream", "https://127.0.0.1:9")
			}
			_, stderr, code := runCLI(t, nil, args...)
			if cmd == "run" {
				if code != 0 {
					t.Errorf("%s, %s: exit %d, want 0 (stale state replaced)\n%s", tc.name, cmd, code, stderr)
				}
				// stop returns once the agent it proved is gone, SIGTERMed
				// or not.
				runCLI(t, nil, "stop", "--state-dir", state)
			} else if code == 0 {
				t.Errorf("%s, stop: exit 0, want an error saying the process was left alone", tc.name)
			}
			if cmd == "stop" {
				if _, err := os.Stat(filepath.Join(state, "agent.json")); err == nil {
					t.Errorf("%s, stop: the untrusted agent.json was kept", tc.name)
				}
			}
			sleep.Process.Signal(syscall.SIGUSR2)
			sleep.Wait()
			if ws, ok := sleep.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGUSR2 {
				t.Errorf("%s, %s: the unrelated process ended with %v before the test's SIGUSR2: it was signalled\n%s", tc.name, cmd, sleep.ProcessState, stderr)
			}
		}
	}
}

// TestStateDirLinksRefused: links and foreign ownership planted in a state
// dir are refused with exit 2 naming the path, and nothing is written or
// chmod-ed through them.
func TestStateDirLinksRefused(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	run := func(state string) (string, int) {
		_, stderr, code := runCLI(t, nil, "run", "--warm=false", "--upstream", "https://127.0.0.1:9", "--state-dir", state)
		if code == 0 {
			runCLI(t, nil, "stop", "--state-dir", state)
		}
		return stderr, code
	}
	t.Run("agent.log link to a root-only file", func(t *testing.T) {
		t.Parallel()
		victim := filepath.Join(t.TempDir(), "shadow")
		os.WriteFile(victim, []byte("root:secret\n"), 0o600)
		state := t.TempDir()
		os.Symlink(victim, filepath.Join(state, "agent.log"))
		stderr, code := run(state)
		if code != 2 || !strings.Contains(stderr, filepath.Join(state, "agent.log")) || !strings.Contains(stderr, "symbolic link") {
			t.Errorf("exit %d, want 2 naming %s/agent.log as a link:\n%s", code, state, stderr)
		}
		if b, _ := os.ReadFile(victim); string(b) != "root:secret\n" {
			t.Errorf("the link's target was written: %q", b)
		}
	})
	t.Run("state dir is a link", func(t *testing.T) {
		t.Parallel()
		target := t.TempDir()
		os.Chmod(target, 0o750)
		state := filepath.Join(t.TempDir(), "state")
		os.Symlink(target, state)
		for _, cmd := range [][]string{{"run", "--warm=false", "--upstream", "https://127.0.0.1:9"}, {"stop"}} {
			_, stderr, code := runCLI(t, nil, append(cmd, "--state-dir", state)...)
			if code != 2 || !strings.Contains(stderr, state) || !strings.Contains(stderr, "symbolic link") {
				t.Errorf("%s: exit %d, want 2 naming %s as a link:\n%s", cmd[0], code, state, stderr)
			}
		}
		if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o750 {
			t.Errorf("the link's target was chmod-ed to %v", fi.Mode().Perm())
		}
	})
	t.Run("state dir of another user", func(t *testing.T) {
		t.Parallel()
		_, uid, gid := testenv.LocalUser(t, "gpsjob")
		state := filepath.Join(t.TempDir(), "x")
		os.Mkdir(state, 0o700)
		os.Chown(state, uid, gid)
		stderr, code := run(state)
		if code != 2 || !strings.Contains(stderr, state) || !strings.Contains(stderr, fmt.Sprintf("belongs to uid %d", uid)) {
			t.Errorf("exit %d, want 2 naming %s and its owner:\n%s", code, state, stderr)
		}
	})
	t.Run("agent dir of another user, not empty", func(t *testing.T) {
		t.Parallel()
		// Refused by the agent process itself (PrepareDir, as root): its
		// kind reaches the bootstrap on the readiness pipe.
		_, uid, gid := testenv.LocalUser(t, "gpsjob")
		dir := filepath.Join(t.TempDir(), "agentdir")
		os.Mkdir(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "theirs"), nil, 0o644)
		os.Chown(dir, uid, gid)
		state := t.TempDir()
		_, stderr, code := runCLI(t, nil, "run", "--warm=false", "--upstream", "https://127.0.0.1:9", "--state-dir", state, "--agent-dir", dir)
		if code != 2 || !strings.Contains(stderr, dir) {
			t.Errorf("exit %d, want 2 naming %s:\n%s", code, dir, stderr)
		}
	})
	t.Run("private is a link", func(t *testing.T) {
		t.Parallel()
		elsewhere := t.TempDir()
		state := t.TempDir()
		os.Symlink(elsewhere, filepath.Join(state, "private"))
		stderr, code := run(state)
		if code != 2 || !strings.Contains(stderr, filepath.Join(state, "private")) {
			t.Errorf("exit %d, want 2 naming %s/private:\n%s", code, state, stderr)
		}
		if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
			t.Errorf("files written through the link: %v", ents)
		}
	})
}

// TestKeyCopiesRemoved: 'stop' removes the agent's private key copies, and
// so do 'stop' and the next 'run' after the agent crashed.
func TestKeyCopiesRemoved(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	cert, key := clientFiles(t)
	run := func(state string, withKey bool) {
		t.Helper()
		args := []string{"run", "--warm=false", "--upstream", "https://127.0.0.1:9", "--state-dir", state}
		if withKey {
			args = append(args, "--client-cert", cert, "--client-key", key)
		}
		if _, stderr, code := runCLI(t, nil, args...); code != 0 {
			t.Fatalf("run exit %d\n%s", code, stderr)
		}
	}
	keyCopy := func(state string) string { return filepath.Join(state, "private", "client.key") }
	crash := func(state string) {
		t.Helper()
		pid := agentState(t, state)
		syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100; i++ {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("agent %d survived SIGKILL", pid)
	}

	state := filepath.Join(t.TempDir(), "s")
	run(state, true)
	if _, err := os.Stat(keyCopy(state)); err != nil {
		t.Fatalf("no key copy while the agent runs: %v", err)
	}
	runCLI(t, nil, "stop", "--state-dir", state)
	if _, err := os.Lstat(filepath.Join(state, "private")); err == nil {
		t.Errorf("stop left %s/private", state)
	}

	// Crash, then stop.
	run(state, true)
	crash(state)
	if _, err := os.Stat(keyCopy(state)); err != nil {
		t.Fatalf("sanity: SIGKILL must leave the key copy behind: %v", err)
	}
	runCLI(t, nil, "stop", "--state-dir", state)
	if _, err := os.Lstat(filepath.Join(state, "private")); err == nil {
		t.Errorf("stop after a crash left %s/private", state)
	}

	// Crash, then run again (without a key this time: nothing may be left).
	run(state, true)
	crash(state)
	run(state, false)
	defer runCLI(t, nil, "stop", "--state-dir", state)
	if _, err := os.Lstat(keyCopy(state)); err == nil {
		t.Errorf("the next run after a crash left the old key copy %s", keyCopy(state))
	}
}

// TestSudoModeKeyCopies: the GitHub-hosted shape — the job's user has
// passwordless sudo, so 'run' starts the agent through 'sudo -n' as the
// agent user. 'stop' by the job's user stops it (proven by its nonce; the
// pid is sudo's child) and leaves no key copy; after a crash, 'stop'
// removes the copies the agent user owns through sudo.
func TestSudoModeKeyCopies(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Fatal("sudo is not installed: .ci/setup installs it (the hosted-runner shape needs it)")
	}
	name, uid, gid := testenv.LocalUser(t, "gpsjob")
	sudoers := filepath.Join("/etc/sudoers.d", name)
	if err := os.WriteFile(sudoers, []byte(name+" ALL=(ALL) NOPASSWD: ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sudoers) })

	// What the job's user needs: the binary, its key files, a state dir.
	base := t.TempDir()
	os.Chmod(base, 0o755)
	os.Chmod(filepath.Dir(base), 0o755) // the test's temp root
	bin := filepath.Join(base, "goproxy-setup")
	b, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cert, key := clientFiles(t)
	for _, f := range []string{cert, key, filepath.Dir(cert)} {
		os.Chown(f, uid, gid)
	}
	state := filepath.Join(base, "state")
	os.Mkdir(state, 0o700)
	os.Chown(state, uid, gid)
	asJob := func(args ...string) (string, int) {
		t.Helper()
		c := exec.Command(bin, args...)
		c.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}
		c.Dir = "/"
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		var stderr bytes.Buffer
		c.Stderr = &stderr
		err := c.Run()
		if err != nil && c.ProcessState == nil {
			t.Fatal(err)
		}
		return stderr.String(), c.ProcessState.ExitCode()
	}
	run := func() int {
		t.Helper()
		stderr, code := asJob("run", "--warm=false", "--upstream", "https://127.0.0.1:9", "--state-dir", state, "--client-cert", cert, "--client-key", key)
		if code != 0 {
			t.Fatalf("run as the job's user (sudo mode): exit %d\n%s", code, stderr)
		}
		if !strings.Contains(stderr, "sudo") {
			t.Errorf("run does not say it separated through sudo:\n%s", stderr)
		}
		pid := agentState(t, state)
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" && (f[1] == "0" || f[1] == fmt.Sprint(uid)) {
				t.Fatalf("agent.json names pid %d with %s: want the agent user's process", pid, l)
			}
		}
		if _, err := os.Stat(filepath.Join(state, "private", "client.key")); err != nil {
			t.Fatalf("no key copy while the agent runs: %v", err)
		}
		return pid
	}
	gone := func(pid int) bool {
		for i := 0; i < 100; i++ {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}

	pid := run()
	if stderr, code := asJob("stop", "--state-dir", state); code != 0 {
		t.Errorf("stop as the job's user: exit %d\n%s", code, stderr)
	}
	if !gone(pid) {
		t.Errorf("the agent (pid %d) still runs after stop", pid)
	}
	if _, err := os.Lstat(filepath.Join(state, "private")); err == nil {
		t.Errorf("stop left %s/private", state)
	}

	pid = run()
	syscall.Kill(pid, syscall.SIGKILL)
	if !gone(pid) {
		t.Fatalf("agent %d survived SIGKILL", pid)
	}
	asJob("stop", "--state-dir", state)
	if _, err := os.Lstat(filepath.Join(state, "private")); err == nil {
		t.Errorf("stop after a crash left %s/private (the agent user's files, removable through sudo)", state)
	}
}

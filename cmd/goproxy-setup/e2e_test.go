package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// binary is the real goproxy-setup binary the end-to-end tests run.
func binary(t *testing.T) string { return testenv.Binary(t) }

var e2eModules = []testenv.Module{
	{Path: "example.com/alpha", Version: "v1.0.0"},
	{Path: "example.com/Beta/gamma", Version: "v0.2.0"},
	{Path: "example.com/delta/v2", Version: "v2.1.0"},
}

// runCLI runs the binary with env (added to a minimal environment) and
// returns stdout, stderr and the exit code.
func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("goproxy-setup %s did not return (a detached agent must not hold the caller's pipes)", strings.Join(args, " "))
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

type envVar struct{ Name, Value string }

func parseJSONEnv(t *testing.T, s string) map[string]string {
	t.Helper()
	var out struct{ Env []map[string]string }
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("run --format json printed %q: %v", s, err)
	}
	m := map[string]string{}
	for i, v := range out.Env {
		if i == 0 && v["name"] != "GOPROXY" {
			t.Errorf("first variable is %q, want GOPROXY", v["name"])
		}
		m[v["name"]] = v["value"]
	}
	return m
}

// TestRunThroughNginx is the forwarder end to end: the real binary's `run`
// starts a detached agent in front of nginx (ssl_verify_client on) and the
// real goproxy server; the real go command downloads, builds and verifies a
// module through it; `status` and `stop` report.
func TestRunThroughNginx(t *testing.T) {
	t.Parallel()
	stack := testenv.StartMTLSStack(t, e2eModules)
	state := t.TempDir()
	work := t.TempDir()
	testenv.WriteConsumer(t, work, e2eModules)
	stdout, stderr, code := runCLI(t, nil, "run", "--format", "json", "--warm=false",
		"--upstream", stack.URL, "--client-cert", stack.CertFile, "--client-key", stack.KeyFile,
		"--ca-cert", stack.CAFile, "--state-dir", state)
	if code != 0 {
		t.Fatalf("run exit %d, want 0\nstderr:\n%s", code, stderr)
	}
	t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
	vars := parseJSONEnv(t, stdout)
	gp := vars["GOPROXY"]
	if !strings.HasPrefix(gp, "http://127.0.0.1:") || len(strings.Split(strings.TrimPrefix(gp, "http://"), "/")) != 2 {
		t.Fatalf("GOPROXY = %q, want http://127.0.0.1:<port>/<token>", gp)
	}
	token := gp[strings.LastIndex(gp, "/")+1:]
	if strings.Contains(stderr, token) {
		t.Errorf("run's log holds the capability token:\n%s", stderr)
	}
	modcache := t.TempDir()
	env := testenv.GoEnv(t, modcache)
	env = append(env, "GOPROXY="+gp)
	for _, args := range [][]string{{"mod", "download"}, {"build", "./..."}} {
		if out, err := testenv.RunGo(t, work, env, args...); err != nil {
			t.Fatalf("go %s through the agent: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	off := append(testenv.GoEnv(t, modcache), "GOPROXY=off")
	if out, err := testenv.RunGo(t, work, off, "mod", "verify"); err != nil {
		t.Fatalf("GOPROXY=off go mod verify: %v\n%s", err, out)
	}
	stdout, stderr, code = runCLI(t, nil, "status", "--json", "--state-dir", state)
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, stderr)
	}
	var st struct {
		Requests  int64            `json:"requests"`
		Served    map[string]int64 `json:"served"`
		Failures  int64            `json:"failures"`
		Upstreams []struct {
			Upstream string `json:"upstream"`
			State    string `json:"state"`
			Retries  *int64 `json:"retries"`
			Resumes  *int64 `json:"resumes"`
		} `json:"upstreams"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, stdout)
	}
	if got, want := st.Served["zip"], int64(len(e2eModules)); got != want {
		t.Errorf("served zips = %d, want %d", got, want)
	}
	if st.Failures != 0 {
		t.Errorf("failures = %d, want 0", st.Failures)
	}
	// Each upstream's retries and resumes, for a flaky network to show.
	if u := st.Upstreams; len(u) != 1 || u[0].Upstream != stack.URL || u[0].State != "closed" || u[0].Retries == nil || u[0].Resumes == nil {
		t.Errorf("status --json upstreams = %+v, want %s, closed, with its retries and resumes counted:\n%s", u, stack.URL, stdout)
	}
	logb, err := os.ReadFile(filepath.Join(state, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{token, string(stack.Client.KeyPEM)} {
		if bytes.Contains(logb, []byte(strings.TrimSpace(secret))) {
			t.Errorf("agent log holds a secret")
		}
	}
	stdout, stderr, code = runCLI(t, nil, "stop", "--state-dir", state)
	if code != 0 {
		t.Fatalf("stop exit %d, want 0: %s", code, stderr)
	}
	if !strings.Contains(stdout, "requests") {
		t.Errorf("stop printed %q, want final stats", stdout)
	}
	if _, err := os.Stat(filepath.Join(state, "agent.json")); !os.IsNotExist(err) {
		t.Errorf("agent.json still present after stop (err %v)", err)
	}
}

// TestRunRejectedByNginx: each bad identity fails inside the go command's
// own output, with the layer named by the agent's 502 body.
func TestRunRejectedByNginx(t *testing.T) {
	t.Parallel()
	binary(t) // built before the short-lived certificate is issued
	for _, test := range []struct {
		name string
		// client returns the cert and key files the agent presents.
		client    func(t *testing.T, s *testenv.Stack) (string, string)
		wantLayer string
		wantFix   string
	}{
		{
			name:      "no client certificate",
			client:    func(t *testing.T, s *testenv.Stack) (string, string) { return "", "" },
			wantLayer: "client-cert",
			wantFix:   "client-cert",
		},
		{
			name: "certificate from another CA",
			client: func(t *testing.T, s *testenv.Stack) (string, string) {
				other := testenv.NewCA(t)
				return other.Issue(t, testenv.CertSpec{CommonName: "intruder", Client: true}).WriteFiles(t, t.TempDir())
			},
			wantLayer: "client-cert",
			wantFix:   "client-cert",
		},
		{
			name: "certificate that expires while the agent runs",
			client: func(t *testing.T, s *testenv.Stack) (string, string) {
				leaf := s.ClientCA.Issue(t, testenv.CertSpec{CommonName: "short-lived", Client: true, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(3 * time.Second)})
				return leaf.WriteFiles(t, t.TempDir())
			},
			wantLayer: "client-cert",
			wantFix:   "expir",
		},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			stack := testenv.StartMTLSStack(t, e2eModules)
			cert, key := test.client(t, stack)
			args := []string{"run", "--format", "dotenv", "--warm=false", "--upstream", stack.URL, "--ca-cert", stack.CAFile, "--state-dir", t.TempDir()}
			if cert != "" {
				args = append(args, "--client-cert", cert, "--client-key", key)
			}
			stdout, stderr, code := runCLI(t, nil, args...)
			if code != 0 {
				t.Fatalf("run exit %d, want 0\n%s", code, stderr)
			}
			state := args[len(args)-1-boolToInt(cert != "")*4]
			t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
			gp := strings.TrimPrefix(strings.SplitN(stdout, "\n", 2)[0], "GOPROXY=")
			if test.name == "certificate that expires while the agent runs" {
				// nginx checks with the real clock: wait until the
				// certificate the agent presents has expired.
				id, err := tlsauth.LoadFiles(cert, key)
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Until(id.Certificate().Leaf.NotAfter) + time.Millisecond)
			}
			work := t.TempDir()
			testenv.WriteConsumer(t, work, e2eModules)
			env := append(testenv.GoEnv(t, t.TempDir()), "GOPROXY="+gp)
			out, err := testenv.RunGo(t, work, env, "mod", "download")
			if err == nil {
				t.Fatalf("go mod download succeeded, want a failure\n%s", out)
			}
			if !strings.Contains(out, "server response:") || !strings.Contains(out, "goproxy-setup: "+test.wantLayer+" failure") {
				t.Errorf("go output does not name layer %q:\n%s", test.wantLayer, out)
			}
			if !strings.Contains(strings.ToLower(out), test.wantFix) {
				t.Errorf("go output does not mention %q:\n%s", test.wantFix, out)
			}
			// The agent diagnoses the failing upstream in the background;
			// the final report carries that diagnosis.
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				out, _, _ := runCLI(t, nil, "status", "--json", "--state-dir", state)
				if strings.Contains(out, `"diagnoses"`) {
					break
				}
			}
			stopOut, stopErr, code := runCLI(t, nil, "stop", "--state-dir", state)
			if code != 3 {
				t.Errorf("stop after failed fetches: exit %d, want 3\n%s", code, stopErr)
			}
			if !strings.Contains(stopOut, "diagnosis:") || !strings.Contains(stopOut, test.wantLayer) {
				t.Errorf("stop's final report lacks the %s diagnosis:\n%s", test.wantLayer, stopOut)
			}
		})
	}
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRunBadInput: bad inputs exit 2 and name the input and the fix.
func TestRunBadInput(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	cert, key := ca.Issue(t, testenv.CertSpec{Client: true}).WriteFiles(t, dir)
	loose := filepath.Join(dir, "loose.key")
	b, _ := os.ReadFile(key)
	os.WriteFile(loose, b, 0o644)
	expiredCert, expiredKey := ca.Issue(t, testenv.CertSpec{Client: true, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}).WriteFiles(t, t.TempDir())
	otherCert, _ := ca.Issue(t, testenv.CertSpec{Client: true}).WriteFiles(t, t.TempDir())
	for _, test := range []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"key readable by others", []string{"--client-cert", cert, "--client-key", loose}, nil, []string{loose, "0644", "chmod 600"}},
		{"expired certificate", []string{"--client-cert", expiredCert, "--client-key", expiredKey}, nil, []string{"expired"}},
		{"key of another certificate", []string{"--client-cert", otherCert, "--client-key", key}, nil, []string{"does not match"}},
		{"missing key file", []string{"--client-cert", cert, "--client-key", filepath.Join(dir, "nope.key")}, nil, []string{"nope.key"}},
		{"cert without key", []string{"--client-cert", cert}, nil, []string{"--client-key"}},
		{"bad upstream list", []string{"--upstream", "https://a.example,,https://b.example"}, nil, []string{"doubled separator"}},
		{"direct not last", []string{"--upstream", "direct,https://a.example"}, nil, []string{"last element"}},
		{"empty upstream", []string{"--upstream", ""}, nil, []string{"--upstream", "empty", "GOPROXY_SETUP_UPSTREAM"}},
		{"empty upstream variable", nil, []string{"GOPROXY_SETUP_UPSTREAM="}, []string{"--upstream", "empty", "GOPROXY_SETUP_UPSTREAM"}},
		{"direct without a policy", []string{"--upstream", "https://a.example,direct"}, nil, []string{"does not allow direct", "direct { allowed = true }"}},
		{"bad format", []string{"--format", "yaml"}, nil, []string{"--format", "shell, dotenv or json"}},
		{"bad env twin", nil, []string{"GOPROXY_SETUP_TIMEOUT=soon"}, []string{"GOPROXY_SETUP_TIMEOUT", "--timeout"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"run", "--warm=false", "--state-dir", t.TempDir()}, test.args...)
			_, stderr, code := runCLI(t, test.env, args...)
			if code != 2 {
				t.Errorf("exit %d, want 2\n%s", code, stderr)
			}
			for _, w := range test.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestRunDoesNotHoldPipes: `$(goproxy-setup run)` returns although the
// agent keeps running (it must not inherit the caller's stdout/stderr).
func TestRunDoesNotHoldPipes(t *testing.T) {
	t.Parallel()
	url, _ := testenv.NewModuleServer(t, e2eModules)
	state := t.TempDir()
	cmd := exec.Command("bash", "-c", `out="$("$0" run --warm=false --upstream "$1" --state-dir "$2" 2>&1)"; echo "$out"`, binary(t), url, state)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	done := make(chan []byte, 1)
	go func() { b, _ := cmd.CombinedOutput(); done <- b }()
	select {
	case out := <-done:
		if !strings.Contains(string(out), "export GOPROXY='http://127.0.0.1:") {
			t.Errorf("captured output %q, want the export line", out)
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("$(goproxy-setup run) did not return: the agent holds the capture's pipe")
	}
	runCLI(t, nil, "stop", "--state-dir", state)
}

// TestRunWarms: `run` warms GOMODCACHE from the working directory's go.sum
// through the agent, so the build then needs no network at all.
func TestRunWarms(t *testing.T) {
	t.Parallel()
	stack := testenv.StartMTLSStack(t, e2eModules)
	work := t.TempDir()
	testenv.WriteConsumer(t, work, e2eModules)
	modcache := t.TempDir()
	state := t.TempDir()
	stdout, stderr, code := runCLI(t, []string{"GOMODCACHE=" + modcache, "GOFLAGS=-modcacherw"}, "run", "--format", "dotenv",
		"--upstream", stack.URL, "--client-cert", stack.CertFile, "--client-key", stack.KeyFile,
		"--ca-cert", stack.CAFile, "--state-dir", state, "--working-directory", work)
	if code != 0 {
		t.Fatalf("run exit %d\n%s", code, stderr)
	}
	t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
	if !strings.HasPrefix(stdout, "GOPROXY=http://127.0.0.1:") {
		t.Errorf("dotenv output %q, want GOPROXY first", stdout)
	}
	if !strings.Contains(stderr, "warmed 3 modules") {
		t.Errorf("run did not report the warm:\n%s", stderr)
	}
	off := append(testenv.GoEnv(t, modcache), "GOPROXY=off")
	for _, args := range [][]string{{"build", "./..."}, {"mod", "verify"}} {
		if out, err := testenv.RunGo(t, work, off, args...); err != nil {
			t.Fatalf("GOPROXY=off go %s after run's warm: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestRunWarmUnreachable: when the upstream goes away, warm fails with exit
// 3, a report in the state dir whose path is printed, and the failing layer.
func TestRunWarmUnreachable(t *testing.T) {
	t.Parallel()
	stack := testenv.StartMTLSStack(t, e2eModules)
	work := t.TempDir()
	testenv.WriteConsumer(t, work, e2eModules)
	stack.Stop()
	state := t.TempDir()
	_, stderr, code := runCLI(t, []string{"GOMODCACHE=" + t.TempDir(), "GOFLAGS=-modcacherw"}, "run", "--timeout", "5s",
		"--upstream", stack.URL, "--client-cert", stack.CertFile, "--client-key", stack.KeyFile,
		"--ca-cert", stack.CAFile, "--state-dir", state, "--working-directory", work)
	t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
	if code != 3 {
		t.Fatalf("run with a dead upstream: exit %d, want 3\n%s", code, stderr)
	}
	if !strings.Contains(stderr, filepath.Join(state, "report.txt")) {
		t.Errorf("stderr does not print the report path:\n%s", stderr)
	}
	report, err := os.ReadFile(filepath.Join(state, "report.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(report), "tcp") {
		t.Errorf("report does not name the tcp layer:\n%s", report)
	}
}

// TestRunTwiceReplaces: a second run with the same state dir replaces the
// first agent cleanly: the old one is gone, the new one serves.
func TestRunTwiceReplaces(t *testing.T) {
	t.Parallel()
	url, _ := testenv.NewModuleServer(t, e2eModules)
	state := t.TempDir()
	pids := make([]int, 2)
	for i := range pids {
		_, stderr, code := runCLI(t, nil, "run", "--warm=false", "--upstream", url, "--state-dir", state)
		if code != 0 {
			t.Fatalf("run %d: exit %d\n%s", i+1, code, stderr)
		}
		b, err := os.ReadFile(filepath.Join(state, "agent.json"))
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ PID int }
		json.Unmarshal(b, &st)
		pids[i] = st.PID
	}
	t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
	if pids[0] == pids[1] {
		t.Fatalf("both runs report pid %d", pids[0])
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pids[0])); err == nil {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/stat")
		if !strings.Contains(string(b), ") Z ") {
			t.Errorf("the first agent (pid %d) still runs after the second run", pids[0])
		}
	}
	if _, stderr, code := runCLI(t, nil, "status", "--state-dir", state); code != 0 {
		t.Errorf("status after the second run: exit %d\n%s", code, stderr)
	}
}

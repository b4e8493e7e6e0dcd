package main

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// gitlabJobEnv lays out a GitLab job the way gitlab-runner does (the
// project dir, and beside it <project>.tmp with the "file" variables, 0644
// under the runner's umask) and returns the job's environment. keyDir is
// where the key file variable is written: the job's temp dir, or elsewhere
// to prove the custody check still applies there.
func gitlabJobEnv(t *testing.T, stack *testenv.Stack, keyDir func(project, tmp string) string) (env []string, project, tmp, key string) {
	t.Helper()
	project = filepath.Join(t.TempDir(), "group", "project")
	tmp = project + ".tmp"
	for _, d := range []string{project, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WriteConsumer(t, project, e2eModules)
	write := func(dir, name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert := write(tmp, "GOPROXY_SETUP_CLIENT_CERT", stack.Client.CertPEM)
	key = write(keyDir(project, tmp), "GOPROXY_SETUP_CLIENT_KEY", stack.Client.KeyPEM)
	env = []string{
		"CI=true", "GITLAB_CI=true", "CI_JOB_ID=77", "CI_PROJECT_DIR=" + project,
		"GOMODCACHE=" + t.TempDir(), "GOFLAGS=-modcacherw",
		"GOPROXY_SETUP_CLIENT_CERT=" + cert, "GOPROXY_SETUP_CLIENT_KEY=" + key,
		"GOPROXY_SETUP_CA_CERT=" + stack.CAFile, "GOPROXY_SETUP_UPSTREAM=" + stack.URL,
		"GOPROXY_SETUP_STATE_DIR=" + filepath.Join(t.TempDir(), "state"),
		"GOPROXY_SETUP_WORKING_DIRECTORY=" + project,
	}
	return env, project, tmp, key
}

// noStrayEscapes fails when s holds an escape sequence other than GitLab's
// section markers (ESC [0K): colour codes from the logger must never reach
// a pipe or a file.
func noStrayEscapes(t *testing.T, name, s string) {
	t.Helper()
	if rest := strings.ReplaceAll(s, "\x1b[0K", ""); strings.ContainsRune(rest, 0x1b) {
		i := strings.IndexRune(rest, 0x1b)
		t.Errorf("%s holds an escape sequence at %q", name, rest[max(0, i-20):min(len(rest), i+20)])
	}
}

// TestGitLabFileVariableKey is the GitLab template's day-one path with a
// real mTLS upstream (nginx with ssl_verify_client on, goproxy behind it):
// the client key is a "file" variable, 0644 in the job's temp dir, as
// gitlab-runner writes it. The setup succeeds through a private copy,
// leaves no copy behind, exports the variables, writes a passing JUnit
// report and a dotenv, and the after_script's report agrees. The same 0644
// key anywhere else is still refused by the custody check.
func TestGitLabFileVariableKey(t *testing.T) {
	t.Parallel()
	stack := testenv.StartMTLSStack(t, e2eModules)

	t.Run("file variable", func(t *testing.T) {
		env, project, tmp, _ := gitlabJobEnv(t, stack, func(_, tmp string) string { return tmp })
		stdout, stderr, code := runCLI(t, env, "gitlab", "--dotenv", "goproxy-setup.env", "--junit", "goproxy-setup.junit.xml")
		t.Cleanup(func() { runCLI(t, env, "gitlab", "--report") })
		if code != 0 {
			t.Fatalf("gitlab exit %d, want 0\nstderr:\n%s", code, stderr)
		}
		if !strings.Contains(stdout, "export GOPROXY='http://127.0.0.1:") || !strings.Contains(stdout, "export GOPROXY_SETUP_STATE_DIR=") {
			t.Errorf("stdout lacks the export lines:\n%s", stdout)
		}
		noStrayEscapes(t, "stderr", stderr)
		if strings.Contains(stderr, "readable by group or others") {
			t.Errorf("the file variable key was refused:\n%s", stderr)
		}
		entries, err := os.ReadDir(tmp)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		// No private copy left, and the key's file variable gone once the
		// agent holds the key; the agent's stats snapshot (secret-free) for
		// an after_script in a new container is there.
		if got, want := strings.Join(names, " "), "GOPROXY_SETUP_CLIENT_CERT goproxy-setup-77"; got != want {
			t.Errorf("job temp dir holds %q after setup, want %q (the certificate's file variable and the stats snapshot's directory; no key)", got, want)
		}
		dotenv, err := os.ReadFile(filepath.Join(project, "goproxy-setup.env"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"GOPROXY_SETUP_RESULT=ok\n", "GOPROXY_SETUP_MODULES=3\n"} {
			if !strings.Contains(string(dotenv), want) {
				t.Errorf("dotenv lacks %q:\n%s", want, dotenv)
			}
		}
		junit := readJUnit(t, filepath.Join(project, "goproxy-setup.junit.xml"))
		if junit.Failures != 0 || junit.Tests == 0 {
			t.Errorf("JUnit of a successful setup: %d tests, %d failures", junit.Tests, junit.Failures)
		}
		_, stderr, code = runCLI(t, env, "gitlab", "--report")
		if code != 0 {
			t.Fatalf("gitlab --report exit %d\n%s", code, stderr)
		}
		if !strings.Contains(stderr, "No fetch failed after setup.") {
			t.Errorf("report lacks the clean verdict:\n%s", stderr)
		}
		noStrayEscapes(t, "report stderr", stderr)
	})

	t.Run("readable key elsewhere", func(t *testing.T) {
		env, _, _, key := gitlabJobEnv(t, stack, func(project, _ string) string { return project })
		_, stderr, code := runCLI(t, env, "gitlab")
		t.Cleanup(func() { runCLI(t, env, "gitlab", "--report") })
		if code != 2 {
			t.Fatalf("gitlab with a 0644 key in the project dir: exit %d, want 2\n%s", code, stderr)
		}
		if !strings.Contains(stderr, "client key "+key+" has mode 0644, readable by group or others") {
			t.Errorf("stderr lacks the custody error naming %s:\n%s", key, stderr)
		}
	})
}

func readJUnit(t *testing.T, path string) (s struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
}) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return s
}

// TestGitLabLocalFault: with an unusable GOMODCACHE (a regular file) the
// failure is this machine's, and the GitLab front end says so: no "failing
// layer" line, a JUnit report with a failure, a dotenv without success
// figures, and the error printed once.
func TestGitLabLocalFault(t *testing.T) {
	t.Parallel()
	stack := testenv.StartMTLSStack(t, e2eModules)
	env, project, _, _ := gitlabJobEnv(t, stack, func(_, tmp string) string { return tmp })
	modcache := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(modcache, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	env = append(env, "GOMODCACHE="+modcache)
	stdout, stderr, code := runCLI(t, env, "gitlab", "--dotenv", "goproxy-setup.env", "--junit", "goproxy-setup.junit.xml", "--timeout", "10s")
	t.Cleanup(func() { runCLI(t, env, "gitlab", "--report") })
	if code == 0 {
		t.Fatalf("gitlab with GOMODCACHE a regular file: exit 0\n%s", stderr)
	}
	if stdout != "" {
		t.Errorf("a failed setup printed export lines:\n%s", stdout)
	}
	noStrayEscapes(t, "stderr", stderr)
	if strings.Contains(stderr, "failing layer: :") {
		t.Errorf("stderr shows an empty failing layer:\n%s", stderr)
	}
	junit := readJUnit(t, filepath.Join(project, "goproxy-setup.junit.xml"))
	if junit.Failures == 0 {
		t.Errorf("JUnit of a failed setup has 0 failures")
	}
	dotenv, err := os.ReadFile(filepath.Join(project, "goproxy-setup.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"MODULES=", "CACHE_HIT=", "RESULT=ok"} {
		if strings.Contains(string(dotenv), bad) {
			t.Errorf("dotenv of a failed setup holds %s:\n%s", bad, dotenv)
		}
	}
	// The error is shown once, in the report section; main's last line
	// only points there.
	if n := strings.Count(stderr, "error:     "); n != 1 {
		t.Errorf("the error is shown %d times, want once:\n%s", n, stderr)
	}
	last := strings.TrimSpace(stderr[strings.LastIndex(strings.TrimRight(stderr, "\n"), "\n")+1:])
	if !strings.HasPrefix(last, "goproxy-setup: setup failed (") {
		t.Errorf("last line %q, want main's one-line pointer", last)
	}
	if code != 1 {
		t.Errorf("a local fault exits %d, want 1\n%s", code, stderr)
	}
	for _, want := range []string{"goproxy-setup failed: local fault", "not the upstream", "point GOMODCACHE elsewhere", "setup failed (local fault, exit 1)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for _, bad := range []string{"failing layer", "diagnosis:", "checks ok"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("a local fault is shown as a network diagnosis (%q):\n%s", bad, stderr)
		}
	}
	if !strings.Contains(string(dotenv), "GOPROXY_SETUP_FAILURE=local\n") {
		t.Errorf("dotenv lacks GOPROXY_SETUP_FAILURE=local:\n%s", dotenv)
	}
	b, err := os.ReadFile(filepath.Join(project, "goproxy-setup.junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `type="local"`) || !strings.Contains(string(b), `message="local fault: `) {
		t.Errorf("JUnit failure does not name the local fault:\n%s", b)
	}
}

// TestGitHubNoEscapes: the GitHub front end's logger writes through the
// redacting writer into a pipe, in CI and outside it, text format: no escape
// byte may reach the step's output.
func TestGitHubNoEscapes(t *testing.T) {
	t.Parallel()
	stack := testenv.StartMTLSStack(t, e2eModules)
	for _, ci := range []string{"", "true"} {
		dir := t.TempDir()
		work := t.TempDir()
		testenv.WriteConsumer(t, work, e2eModules)
		env := []string{
			"GITHUB_ENV=" + filepath.Join(dir, "env"), "GITHUB_OUTPUT=" + filepath.Join(dir, "out"),
			"GITHUB_STEP_SUMMARY=" + filepath.Join(dir, "summary"), "RUNNER_TEMP=" + dir,
			"GOMODCACHE=" + t.TempDir(), "GOFLAGS=-modcacherw", "TERM=xterm-256color",
		}
		if ci != "" {
			env = append(env, "CI="+ci)
		}
		stdout, stderr, code := runCLI(t, env, "github", "--log-format", "text", "--log-level", "debug",
			"--upstream", stack.URL, "--client-cert", string(stack.Client.CertPEM), "--client-key", string(stack.Client.KeyPEM),
			"--ca-cert", stack.CAFile, "--state-dir", filepath.Join(dir, "state"), "--working-directory", work)
		if code != 0 {
			t.Fatalf("github (CI=%q) exit %d\n%s", ci, code, stderr)
		}
		noStrayEscapes(t, "stdout", stdout)
		noStrayEscapes(t, "stderr", stderr)
		if bytes.ContainsRune([]byte(stderr+stdout), 0x1b) {
			t.Errorf("github output holds an escape byte")
		}
		if !strings.Contains(stderr, "agent serving") {
			t.Errorf("stderr lacks the log (nothing checked):\n%s", stderr)
		}
		var shown []string // what the runner shows: all but its mask commands
		for _, l := range strings.Split(stderr+stdout, "\n") {
			if !strings.HasPrefix(l, "::add-mask::") {
				shown = append(shown, l)
			}
		}
		if strings.Contains(strings.Join(shown, "\n"), strings.Split(strings.TrimSpace(string(stack.Client.KeyPEM)), "\n")[1]) {
			t.Errorf("the key content reached the log")
		}
		entries, _ := filepath.Glob(filepath.Join(dir, "goproxy-setup-identity-*"))
		if len(entries) != 0 {
			t.Errorf("private identity copies left behind: %v", entries)
		}
		_, stderr, code = runCLI(t, env, "github", "--report", "--state-dir", filepath.Join(dir, "state"))
		if code != 0 {
			t.Errorf("github --report exit %d\n%s", code, stderr)
		}
	}
}

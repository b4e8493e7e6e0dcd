package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testenv"
)

// TestRunEnrolsWithStepCA: enrol with a real step-ca (JWK one-time token)
// → agent → nginx that trusts only that CA's client certificates → the go
// command builds. The token never reaches a log, the env or the state dir.
func TestRunEnrolsWithStepCA(t *testing.T) {
	t.Parallel()
	sca := testenv.StartStepCA(t)
	stack := testenv.StartMTLSStack(t, e2eModules, testenv.WithClientCA(sca.CA))
	token := sca.JWKToken(t, "ci-job.example")
	state := t.TempDir()
	binary(t) // build first: the timing below is run's own
	start := time.Now()
	stdout, stderr, code := runCLI(t, []string{"GOPROXY_SETUP_TOKEN=" + token},
		"run", "--format", "json", "--warm=false", "--upstream", stack.URL, "--ca-cert", stack.CAFile,
		"--ca-url", sca.URL, "--ca-fingerprint", sca.Fingerprint, "--state-dir", state)
	t.Logf("run → serving agent with enrolment: %s", time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("run exit %d, want 0\n%s\nstep-ca log:\n%s", code, stderr, sca.Logs())
	}
	t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
	vars := parseJSONEnv(t, stdout)
	work := t.TempDir()
	testenv.WriteConsumer(t, work, e2eModules)
	env := append(testenv.GoEnv(t, t.TempDir()), "GOPROXY="+vars["GOPROXY"])
	if out, err := testenv.RunGo(t, work, env, "build", "./..."); err != nil {
		t.Fatalf("go build through the enrolled agent: %v\n%s", err, out)
	}
	var files []string
	filepath.Walk(state, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), token) {
			t.Errorf("%s holds the enrolment token", f)
		}
	}
	if strings.Contains(stdout+stderr, token) {
		t.Errorf("run's output holds the enrolment token")
	}
	// A one-time token is single-use: a second run with it is refused with
	// a message that says so, and exit 2 (bad input).
	_, stderr, code = runCLI(t, []string{"GOPROXY_SETUP_TOKEN=" + token},
		"run", "--warm=false", "--upstream", stack.URL, "--ca-url", sca.URL, "--ca-fingerprint", sca.Fingerprint, "--state-dir", t.TempDir())
	if code != 2 || !strings.Contains(strings.ToLower(stderr), "already") {
		t.Errorf("reused token: exit %d, want 2 with a message about reuse:\n%s", code, stderr)
	}
	if strings.Contains(stderr, token) {
		t.Errorf("error output holds the token")
	}
}

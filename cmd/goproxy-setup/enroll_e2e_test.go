package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
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

// TestAgentRenewsUnderLoad: with short-lived certificates from the real
// step-ca, the agent renews several times while a client fetches through it
// continuously from nginx (which trusts only that CA): no request fails.
// The load runs until the agent's log shows the second renewal (at two
// thirds of the first renewed certificate's life, so after the first
// certificate expired), then one round more.
func TestAgentRenewsUnderLoad(t *testing.T) {
	t.Parallel()
	sca := testenv.StartStepCA(t)
	// nginx closes a connection after 40 requests, so the agent makes new
	// handshakes all along: each must present a valid (renewed) certificate.
	stack := testenv.StartMTLSStack(t, e2eModules, testenv.WithClientCA(sca.CA), testenv.WithConfigEdit(func(conf string) string {
		return strings.Replace(conf, "    server {", "    keepalive_requests 40;\n    server {", 1)
	}))
	if !strings.Contains(readFile(t, filepath.Join(stack.Dir, "nginx.conf")), "keepalive_requests 40;") {
		t.Fatal("could not set keepalive_requests in the nginx config")
	}
	state := t.TempDir()
	stdout, stderr, code := runCLI(t, []string{"GOPROXY_SETUP_TOKEN=" + sca.JWKToken(t, "ci-job.example")},
		"run", "--format", "json", "--warm=false", "--upstream", stack.URL, "--ca-cert", stack.CAFile,
		"--ca-url", sca.URL, "--ca-fingerprint", sca.Fingerprint, "--cert-lifetime", "10s", "--state-dir", state)
	if code != 0 {
		t.Fatalf("run exit %d\n%s", code, stderr)
	}
	t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
	gp := parseJSONEnv(t, stdout)["GOPROXY"]
	// Fresh connections now and then, so new handshakes use the renewed
	// certificate; established ones keep working as they are.
	var requests, failures int
	renewals := func() int {
		return strings.Count(readFile(t, filepath.Join(state, "agent.log")), "renewed client certificate")
	}
	const limit = 90 * time.Second // a failure, not a measure: renewals come at ~7 s and ~13 s
	deadline := time.Now().Add(limit)
	for last := false; !last && time.Now().Before(deadline); {
		last = renewals() >= 2
		client := &http.Client{Timeout: 10 * time.Second}
		for j := 0; j < 20; j++ {
			path := []string{"example.com/alpha/@v/v1.0.0.info", "example.com/alpha/@v/list", "example.com/delta/v2/@v/v2.1.0.mod"}[j%3]
			resp, err := client.Get(gp + "/" + path)
			requests++
			if err != nil || resp.StatusCode != http.StatusOK {
				failures++
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					t.Logf("request %d: %d %s", requests, resp.StatusCode, b)
				} else {
					t.Logf("request %d: %v", requests, err)
				}
			}
			if resp != nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(25 * time.Millisecond)
		}
		client.CloseIdleConnections()
	}
	n := renewals()
	handshakes := strings.Count(readFile(t, filepath.Join(stack.Dir, "access.log")), "\n") / 40
	t.Logf("%d requests through the agent, %d failed, %d renewals, ≥%d upstream connections", requests, failures, n, handshakes)
	if failures != 0 {
		t.Errorf("%d of %d requests failed across renewals, want 0", failures, requests)
	}
	if n < 2 {
		t.Errorf("the agent renewed %d times in %s with 10 s certificates, want at least 2\n%s", n, limit, readFile(t, filepath.Join(state, "agent.log")))
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

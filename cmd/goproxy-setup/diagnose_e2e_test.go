package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// TestDiagnoseCLI: against a healthy mTLS upstream every check is ok (exit
// 0, Contract JSON); against a closed port the tcp layer fails (exit 3) and
// the report lands in the state dir.
func TestDiagnoseCLI(t *testing.T) {
	t.Parallel()
	stack := testenv.StartMTLSStack(t, e2eModules)
	stdout, stderr, code := runCLI(t, nil, "diagnose", "--format", "json", "--upstream", stack.URL,
		"--client-cert", stack.CertFile, "--client-key", stack.KeyFile, "--ca-cert", stack.CAFile,
		"--state-dir", t.TempDir(), "example.com/alpha@v1.0.0")
	if code != 0 {
		t.Fatalf("diagnose healthy upstream: exit %d, want 0\n%s\n%s", code, stdout, stderr)
	}
	var rep struct {
		Checks []struct {
			Layer, Status, Detail, Remedy string
			DurationMS                    *float64 `json:"duration_ms"`
		}
		Verdict struct{ Layer, Summary string }
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("diagnose --format json: %v\n%s", err, stdout)
	}
	layers := map[string]bool{}
	for _, c := range rep.Checks {
		layers[c.Layer] = true
		if c.Status == "fail" {
			t.Errorf("check %s failed on a healthy upstream: %s", c.Layer, c.Detail)
		}
		if c.DurationMS == nil {
			t.Errorf("check %s has no duration_ms", c.Layer)
		}
	}
	for _, l := range []string{"env", "dns", "tcp", "tls", "client-cert", "clock", "http"} {
		if !layers[l] {
			t.Errorf("no %s check in %v", l, layers)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + ln.Addr().String()
	ln.Close()
	state := t.TempDir()
	stdout, stderr, code = runCLI(t, nil, "diagnose", "--upstream", dead, "--state-dir", state)
	if code != 3 {
		t.Fatalf("diagnose closed port: exit %d, want 3\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout+stderr, "tcp") || !strings.Contains(stdout+stderr, "refused") {
		t.Errorf("report does not name tcp / refused:\n%s\n%s", stdout, stderr)
	}
	if _, err := os.Stat(state + "/report.json"); err != nil {
		t.Errorf("no report in the state dir: %v", err)
	}
}

// TestDiagnosePolicy: diagnose takes the same path as the other commands:
// without --upstream it checks the --policy's default route (here a closed
// loopback port), and an empty --upstream is bad input.
func TestDiagnosePolicy(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	pol := filepath.Join(t.TempDir(), "p.hcl")
	if err := os.WriteFile(pol, []byte("upstream \"corp\" {\n  url = \"https://"+addr+"\"\n}\nupstreams = [\"corp\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, nil, "diagnose", "--format", "json", "--policy", pol, "--state-dir", t.TempDir())
	if code != 3 {
		t.Fatalf("diagnose --policy with a closed port: exit %d, want 3\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, addr) || !strings.Contains(stdout, "refused") {
		t.Errorf("report does not name the policy's upstream %s as refused:\n%s", addr, stdout)
	}
	_, stderr, code = runCLI(t, []string{"GOPROXY_SETUP_UPSTREAM="}, "diagnose", "--policy", pol)
	if code != 2 || !strings.Contains(stderr, "empty") {
		t.Errorf("diagnose with an empty GOPROXY_SETUP_UPSTREAM: exit %d, want 2 naming the empty list\n%s", code, stderr)
	}
}

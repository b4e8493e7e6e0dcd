package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// childEnv makes the test binary run goproxy-bench's main: the
// subcommands start this very binary again (agent-serve, warm-child,
// warm-floor), and the environment carries the variable to them.
const childEnv = "GOPROXY_BENCH_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// smokeModules are the generated modules the smoke tests serve.
var smokeModules = []testenv.Module{
	{Path: "example.com/alpha", Version: "v1.0.0"},
	{Path: "example.com/beta/v2", Version: "v2.1.0"},
	{Path: "example.com/gamma", Version: "v0.3.0"},
}

// runBench runs the goproxy-bench main in a child process with args and
// returns its stdout and stderr; a non-zero exit fails the test.
func runBench(t *testing.T, args ...string) (string, string) {
	t.Helper()
	cmd := benchCmd(t, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("goproxy-bench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

func benchCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1", "HOME="+testenv.QuietHome(t), "GOFLAGS=", "GOTOOLCHAIN=local")
	return cmd
}

// tinyFixture writes smokeModules' consumer as the fixture "tiny" into a
// fixtures dir and serves the modules on loopback; it returns the
// fixtures dir and the upstream URL.
func tinyFixture(t *testing.T) (dir, upstream string) {
	t.Helper()
	consumer := t.TempDir()
	testenv.WriteConsumer(t, consumer, smokeModules)
	dir = t.TempDir()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(consumer, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tiny."+f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	upstream, _ = testenv.NewModuleServer(t, smokeModules)
	return dir, upstream
}

// rows returns the lines of out that begin with prefix.
func rows(out, prefix string) []string {
	var rs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			rs = append(rs, strings.TrimSpace(l))
		}
	}
	return rs
}

// TestWarm: the warm benchmark primes its proxy from a loopback upstream
// and prints one row per mode of its table, each with seconds, CPU and
// (except cp) a peak RSS.
func TestWarm(t *testing.T) {
	t.Parallel()
	fixtures, upstream := tinyFixture(t)
	out, _ := runBench(t, "warm", "--fixtures", "tiny", "--fixtures-dir", fixtures, "--upstream", upstream,
		"--cache-dir", t.TempDir(), "--work-dir", t.TempDir(), "--delays", "0ms", "--modes", "go,warm,warm-noextract,floor,hit,cp")
	if !regexp.MustCompile(`fixture +delay +what +seconds +CPU s +peak RSS MB +ratio`).MatchString(out) {
		t.Errorf("no table header:\n%s", out)
	}
	got := rows(out, "tiny")
	want := []string{
		"go mod download",
		"warm --extract",
		"cp -r (cache of warm --extract)",
		"warm --extract=false",
		"floor: inflate+hash CPU",
		"warm on a restored cache",
		"cp -r (cache of warm --extract=false)",
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d (%s):\n%s", len(got), len(want), strings.Join(want, "; "), out)
	}
	for i, w := range want {
		re := regexp.MustCompile(`^tiny +0s +` + regexp.QuoteMeta(w) + ` +\d+\.\d\d +\d+\.\d +(\d+|-)( +.*)?$`)
		if !re.MatchString(got[i]) {
			t.Errorf("row %d = %q, want %q with seconds, CPU and RSS", i, got[i], w)
		}
	}
}

// TestFaults: the faults benchmark prints one row per fault and path; the
// agent and warm, which retry and resume, complete every run.
func TestFaults(t *testing.T) {
	t.Parallel()
	fixtures, upstream := tinyFixture(t)
	faults := []string{"none", "cut", "503"}
	out, _ := runBench(t, "faults", "--fixtures", "tiny", "--fixtures-dir", fixtures, "--upstream", upstream,
		"--cache-dir", t.TempDir(), "--faults", strings.Join(faults, ","), "--timeout", "5s", "--stall", "1s")
	if !regexp.MustCompile(`fixture +fault \(once per zip\) +path +seconds +vs direct, no fault +outcome +retries +resumes +sent twice`).MatchString(out) {
		t.Errorf("no table header:\n%s", out)
	}
	got := rows(out, "tiny")
	if len(got) != len(faults)*3 {
		t.Fatalf("%d rows, want %d (3 faults × direct, agent, warm):\n%s", len(got), len(faults)*3, out)
	}
	i := 0
	for _, f := range faults {
		for _, mode := range []string{"direct", "agent", "warm"} {
			counts := `\d+ +\d+`
			if mode == "direct" {
				counts = `- +-`
			}
			outcome := `ok`
			if mode == "direct" {
				outcome = `(ok|FAILED: .*)` // cmd/go retries nothing
			}
			re := regexp.MustCompile(`^tiny +` + f + ` +` + mode + ` +\d+\.\d +\d+\.\d\dx +` + outcome + ` +` + counts + ` +\d+ B$`)
			if !re.MatchString(got[i]) {
				t.Errorf("row %d = %q, want %s via %s: seconds, ratio, outcome %s, counts", i, got[i], f, mode, outcome)
			}
			i++
		}
	}
}

// TestAgent: the agent benchmark, with a few requests and short phases,
// prints each section of its report.
func TestAgent(t *testing.T) {
	t.Parallel()
	out, _ := runBench(t, "agent", "--clients", "2", "--cores", "1", "--n", "3", "--big-n", "1", "--big-size", "300000",
		"--rps-duration", "200ms", "--load-duration", "300ms", "--failover-rounds", "1")
	for _, re := range []string{
		`(?m)^LATENCY \(sequential\) +n +direct p50 +direct p99 +agent p50 +agent p99 +added p50 +added p99$`,
		`(?m)^\.info +3( +-?\d+\.\d{3}ms){6}$`,
		`(?m)^\.mod +3( +-?\d+\.\d{3}ms){6}$`,
		`(?m)^small \.zip \([^)]+\) +3( +-?\d+\.\d{3}ms){6}$`,
		`(?m)^big \.zip \(29\d\.\d KiB\) +1( +-?\d+\.\d{3}ms){6}$`,
		`(?m)^THROUGHPUT \(\.info, 2 clients\) +duration +requests +errors +req/s +p50 +p99$`,
		`(?m)^direct +200ms +[1-9]\d* +0 +\d+ +\d+\.\d{3}ms +\d+\.\d{3}ms$`,
		`(?m)^agent +200ms +[1-9]\d* +0 +\d+ +\d+\.\d{3}ms +\d+\.\d{3}ms$`,
		`(?m)^LOAD \(2 clients, list/\.info/\.mod/\.zip, 1% big zip\) +duration +requests`,
		`(?m)^agent +300ms +[1-9]\d* +0 +\d+ +\d+\.\d +\d+\.\d{3}ms +\d+\.\d{3}ms$`,
		`(?m)^AGENT PROCESS: peak RSS \(VmHWM\) \S+ \S*B, RSS now .*, GOMAXPROCS 1; agent stats: [1-9]\d* requests, 0 failures, \d+ shared fetches$`,
		`(?m)^FAILOVER .*: median \d+\.\d{3}ms, min \d+\.\d{3}ms, max \d+\.\d{3}ms over 1 rounds; failed requests: \d+$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks a line matching %s:\n%s", re, out)
		}
	}
}

// TestServeProxy: serve-proxy prints its loopback URL, serves the
// directory's GOPROXY files, and ends on SIGTERM.
func TestServeProxy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	testenv.WriteProxyDir(t, dir, smokeModules)
	cmd := benchCmd(t, "serve-proxy", "--dir", dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("serve-proxy printed %q: %v\n%s", line, err, stderr.String())
	}
	url := strings.TrimSpace(line)
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("serve-proxy URL = %q, want http://127.0.0.1:PORT", url)
	}
	resp, err := http.Get(url + "/example.com/alpha/@v/list")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "v1.0.0\n" {
		t.Errorf("GET @v/list: %d %q, want 200 \"v1.0.0\\n\"", resp.StatusCode, body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve-proxy after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("serve-proxy did not end after SIGTERM")
	}
}

// TestUsage: help lists every subcommand; an unknown one is an error
// naming it.
func TestUsage(t *testing.T) {
	t.Parallel()
	_, stderr := runBench(t, "help")
	for _, name := range []string{"agent", "agent-serve", "faults", "serve-proxy", "warm", "warm-child", "warm-floor"} {
		if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(name) + `\s`).MatchString(stderr) {
			t.Errorf("help does not list %s:\n%s", name, stderr)
		}
	}
	cmd := benchCmd(t, "nonsense")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown command "nonsense"`) {
		t.Errorf("goproxy-bench nonsense: %v\n%s\nwant an error naming the command", err, out)
	}
}

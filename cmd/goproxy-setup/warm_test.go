package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// runWarm runs `goproxy-setup warm args...` in dir with env added to a
// minimal environment, and returns stdout, stderr and the exit code.
func runWarm(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary(t), append([]string{"warm"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + testenv.QuietHome(t), "GOTOOLCHAIN=local", "GOFLAGS=", "GOPROXY=off"}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Run()
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// warmProxy serves e2eModules; paths containing fail404 answer 404 with
// a text of the upstream's own.
func warmProxy(t *testing.T, fail404 string) string {
	t.Helper()
	up, _ := testenv.NewModuleServer(t, e2eModules)
	u, _ := url.Parse(up)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail404 != "" && strings.Contains(r.URL.Path, fail404) {
			http.Error(w, "not found: this version was pruned by the corporate proxy", http.StatusNotFound)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestWarmCommandFailures(t *testing.T) {
	t.Parallel()
	consumer := t.TempDir()
	testenv.WriteConsumer(t, consumer, e2eModules)
	goSum := filepath.Join(consumer, "go.sum")
	good := warmProxy(t, "")
	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		wantCode int
		want     []string
		notWant  []string
	}{
		{name: "negative concurrency", args: []string{"--concurrency", "-5"}, wantCode: 2, want: []string{"--concurrency -5"}},
		{name: "zero concurrency", env: []string{"GOPROXY_SETUP_CONCURRENCY=0"}, wantCode: 2, want: []string{"--concurrency 0"}},
		{name: "negative timeout", args: []string{"--timeout", "-5s"}, wantCode: 2, want: []string{"--timeout -5s"}},
		{name: "relative GOMODCACHE", env: []string{"GOMODCACHE=rel/cache"}, wantCode: 2, want: []string{`GOMODCACHE "rel/cache" is a relative path`}},
		{
			name: "404 for a needed module", args: []string{"--upstream", warmProxy(t, "delta")}, wantCode: 1,
			want:    []string{"warm FAILED: 1 of 3 modules failed", "upstream answered", "pruned by the corporate proxy"},
			notWant: []string{"warmed 3", "unreachable", "diagnos"},
		},
		{
			name: "unreachable upstream", args: []string{"--upstream", "http://127.0.0.1:1", "--timeout", "2s"}, wantCode: 3,
			want: []string{"unreachable", "report.txt"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			modcache := filepath.Join(t.TempDir(), "modcache")
			env := append([]string{"GOMODCACHE=" + modcache, "GOPROXY_SETUP_STATE_DIR=" + t.TempDir()}, tc.env...)
			args := append([]string{"--go-sum", goSum, "--upstream", good}, tc.args...)
			stdout, stderr, code := runWarm(t, consumer, env, args...)
			out := stdout + stderr
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not contain %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output contains %q:\n%s", w, out)
				}
			}
		})
	}
}

// A module cache this user cannot write is a local fault: exit 1, the path
// and the fix, no network diagnosis. Run as nobody: root ignores modes.
func TestWarmCommandReadOnlyCache(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("runs the binary as nobody, which needs root; CI runs as root (.ci/run), so this runs there")
	}
	dir, err := os.MkdirTemp("", "warm-ro-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "goproxy-setup")
	data, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	consumer := filepath.Join(dir, "consumer")
	os.Mkdir(consumer, 0o755)
	testenv.WriteConsumer(t, consumer, e2eModules)
	modcache := filepath.Join(dir, "modcache") // root's, 0755: read-only for nobody
	os.Mkdir(modcache, 0o755)
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o777)
	os.Chmod(state, 0o777)
	cmd := exec.CommandContext(t.Context(), bin, "warm", "--go-sum", filepath.Join(consumer, "go.sum"), "--upstream", warmProxy(t, ""), "--state-dir", state)
	cmd.Dir = consumer
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + state, "GOMODCACHE=" + modcache, "GOTOOLCHAIN=local", "GOFLAGS="}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code = %d, want 1 (local fault)\n%s", code, out)
	}
	for _, w := range []string{modcache, "permission denied", "writable", "not the upstream"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("output does not contain %q:\n%s", w, out)
		}
	}
	if strings.Contains(string(out), "report") || strings.Count(string(out), "FAILED") > 1 {
		t.Errorf("a local fault ran a diagnosis or listed each module:\n%s", out)
	}
}

// SIGTERM ends a warm promptly: exit 1, one "canceled" line.
func TestWarmCommandSIGTERM(t *testing.T) {
	t.Parallel()
	consumer := t.TempDir()
	testenv.WriteConsumer(t, consumer, e2eModules)
	fetching := make(chan struct{}, 1)
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case fetching <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	t.Cleanup(stall.Close)
	cmd := exec.Command(binary(t), "warm", "--go-sum", filepath.Join(consumer, "go.sum"), "--upstream", stall.URL, "--state-dir", t.TempDir())
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + testenv.QuietHome(t), "GOMODCACHE=" + filepath.Join(t.TempDir(), "mc"), "GOTOOLCHAIN=local", "GOFLAGS="}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	// SIGTERM once the warm is fetching.
	select {
	case <-fetching:
	case <-done:
		t.Fatalf("warm ended before fetching from the upstream:\n%s", out.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("warm did not end after SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code = %d, want 1 (canceled)\n%s", code, out.String())
	}
	if n := strings.Count(out.String(), "cancel"); n != 1 {
		t.Errorf("%d lines mention cancel, want 1:\n%s", n, out.String())
	}
}

// In a go.work root without go.sum, warm (no --go-sum) warms what every
// module of the workspace needs; cmd/go then builds offline.
func TestWarmCommandWorkspace(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	m1, m2 := filepath.Join(root, "m1"), filepath.Join(root, "m2")
	testenv.WriteConsumer(t, m1, e2eModules[:1])
	testenv.WriteConsumer(t, m2, e2eModules[1:])
	// Two modules of one workspace need two module paths.
	gm, _ := os.ReadFile(filepath.Join(m2, "go.mod"))
	os.WriteFile(filepath.Join(m2, "go.mod"), bytes.Replace(gm, []byte(testenv.ConsumerModule), []byte(testenv.ConsumerModule+"2"), 1), 0o644)
	os.WriteFile(filepath.Join(root, "go.work"), []byte("go 1.21\n\nuse (\n\t./m1\n\t./m2\n)\n"), 0o644)
	modcache := filepath.Join(t.TempDir(), "modcache")
	stdout, stderr, code := runWarm(t, root, []string{"GOMODCACHE=" + modcache, "GOPROXY_SETUP_STATE_DIR=" + t.TempDir()}, "--upstream", warmProxy(t, ""))
	if code != 0 {
		t.Fatalf("warm exit %d:\n%s%s", code, stdout, stderr)
	}
	env := append(testenv.GoEnv(t, modcache), "GOFLAGS=-modcacherw -mod=readonly")
	for _, dir := range []string{m1, m2} {
		if out, err := testenv.RunGo(t, dir, env, "build", "./..."); err != nil {
			t.Errorf("GOPROXY=off go build in %s: %v\n%s", dir, err, out)
		}
	}
}

// warm -h shows the built-in policy's --extract default.
func TestWarmCommandHelp(t *testing.T) {
	t.Parallel()
	_, stderr, _ := runWarm(t, t.TempDir(), nil, "-h")
	if !strings.Contains(stderr, "-extract") || strings.Contains(stderr, "(default true)") {
		t.Errorf("warm -h should show --extract without a true default (the policy's is false):\n%s", stderr)
	}
}

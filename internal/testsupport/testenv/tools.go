package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/mod/modfile"
)

// ModulePath is this repository's module path; RepoRoot looks for it.
const ModulePath = "github.com/goproxy-setup/goproxy-setup"

// toolPackages maps a tool name to the package .ci/build-tools builds for
// it from the pinned versions in .ci/tools/go.mod.
var toolPackages = map[string]string{
	"step-ca":          "github.com/smallstep/certificates/cmd/step-ca",
	"goproxy":          "github.com/goproxy/goproxy/cmd/goproxy",
	"toxiproxy-server": "github.com/Shopify/toxiproxy/v2/cmd/server",
	"actionlint":       "github.com/rhysd/actionlint/cmd/actionlint",
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  string

	toolMu    sync.Mutex
	toolPaths = map[string]string{}
)

// RepoRoot returns the repository root: the nearest directory above the
// working directory whose go.mod declares ModulePath.
func RepoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err.Error()
			return
		}
		for {
			if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modfile.ModulePath(data) == ModulePath {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = "no go.mod declaring module " + ModulePath + " above the working directory"
				return
			}
			dir = parent
		}
	})
	if rootDir == "" {
		t.Fatalf("testenv: locate the repository root: %s", rootErr)
	}
	return rootDir
}

// Tool returns the path of a third-party test server or tool built from
// .ci/tools: "step-ca", "goproxy", "toxiproxy-server" or "actionlint". A
// missing binary is built into .ci/bin the way .ci/build-tools does it,
// under an exclusive lock on .ci/bin/.lock so that parallel test binaries
// build each tool once. A failed build fails the test.
func Tool(t testing.TB, name string) string {
	t.Helper()
	pkg, ok := toolPackages[name]
	if !ok {
		t.Fatalf("testenv: unknown tool %q: add it to .ci/tools and toolPackages", name)
	}
	toolMu.Lock()
	defer toolMu.Unlock()
	if p, ok := toolPaths[name]; ok {
		return p
	}
	root := RepoRoot(t)
	bin := filepath.Join(root, ".ci", "bin")
	out := filepath.Join(bin, name)
	if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		toolPaths[name] = out
		return out
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatalf("testenv: build tool %s: %v", name, err)
	}
	lock, err := os.OpenFile(filepath.Join(bin, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("testenv: build tool %s: %v", name, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("testenv: build tool %s: lock %s: %v", name, lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	// Another test binary may have built it while we waited.
	if _, err := os.Stat(out); err != nil {
		t.Logf("testenv: building %s (%s) into %s; run .ci/build-tools to do this ahead of the tests", name, pkg, bin)
		tmp := filepath.Join(bin, ".tmp-"+name)
		cmd := exec.Command(goCommand(t), "build", "-trimpath", "-o", tmp, pkg)
		cmd.Dir = filepath.Join(root, ".ci", "tools")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=")
		if outb, err := cmd.CombinedOutput(); err != nil {
			os.Remove(tmp)
			t.Fatalf("testenv: build tool %s: (cd .ci/tools && CGO_ENABLED=0 go build -o ../bin/%s %s): %v\n%s\nRun .ci/build-tools (it needs the module proxy for the pinned versions in .ci/tools/go.mod).", name, name, pkg, err, outb)
		}
		if err := os.Rename(tmp, out); err != nil {
			t.Fatalf("testenv: build tool %s: %v", name, err)
		}
	}
	toolPaths[name] = out
	return out
}

// goCommand returns the go command to run: the one on PATH, else the one in
// /usr/local/go.
func goCommand(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go"
	}
	t.Fatalf("testenv: the go command is not on PATH nor in /usr/local/go/bin")
	return ""
}

// SharedGoCache returns the GOCACHE shared by every test that runs the go
// command: os.UserCacheDir()/goproxy-setup-test-gocache, so compiled
// packages are reused across tests and runs. The build cache is safe for
// concurrent use.
func SharedGoCache(t testing.TB) string {
	t.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "goproxy-setup-test-gocache")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testenv: GOCACHE: %v", err)
	}
	return dir
}

// GoEnv returns a minimal, hermetic environment for the real go command:
// PATH (the go command's directory and the system bin directories), HOME
// (a fresh temp dir), GOTOOLCHAIN=local, GOFLAGS=-mod=mod -modcacherw
// (-modcacherw so t.TempDir can remove the module cache), GONOSUMDB=*,
// GONOSUMCHECK=1, GOSUMDB=off, GOPROXY=off, GOMODCACHE=modcache, the shared
// GOCACHE, GOENV=off, CGO_ENABLED=0, and no HTTP(S)_PROXY. Callers override
// a variable by appending it: os/exec keeps the last value of a duplicate.
func GoEnv(t testing.TB, modcache string) []string {
	t.Helper()
	home := QuietHome(t)
	gobin := filepath.Dir(goCommand(t))
	return []string{
		"PATH=" + gobin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"GOPATH=" + filepath.Join(home, "go"),
		"TMPDIR=" + os.TempDir(),
		"GOTOOLCHAIN=local",
		"GOFLAGS=-mod=mod -modcacherw",
		"GONOSUMDB=*",
		"GONOSUMCHECK=1",
		"GOSUMDB=off",
		"GOPROXY=off",
		"GOMODCACHE=" + modcache,
		"GOCACHE=" + SharedGoCache(t),
		"GOENV=off",
		"GOTELEMETRY=off",
		"CGO_ENABLED=0",
	}
}

// RunGo runs the go command with args in dir with exactly env (see GoEnv),
// and returns its combined output. The command is killed when the test
// ends.
func RunGo(t testing.TB, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), goCommand(t), args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// servers that must be told their port. Prefer listening on port 0 where
// the server allows it: another process may take the port in between.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// EnvValue returns the last value of key in env (KEY=VALUE entries), as
// exec.Cmd would see it; "" when absent.
func EnvValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// firstLines returns at most n lines of s, for failure messages.
func firstLines(s string, n int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var out []string
	for sc.Scan() && len(out) < n {
		out = append(out, sc.Text())
	}
	return strings.Join(out, "\n")
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary builds the goproxy-setup command once per test process, as a
// release is built (static, -trimpath), and returns its path: end-to-end
// tests run the real binary.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		// One binary per test process, in a directory named after the
		// process: nothing removes it when the process ends (tests share
		// it), so the next build removes those of processes gone by then.
		removeStaleBinaries()
		dir, err := os.MkdirTemp("", fmt.Sprintf("goproxy-setup-bin-%d-", os.Getpid()))
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "goproxy-setup")
		cmd := exec.Command("go", "build", "-trimpath", "-o", binPath, "./cmd/goproxy-setup")
		cmd.Dir = RepoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("build goproxy-setup: %v", binErr)
	}
	return binPath
}

// removeStaleBinaries removes the binary directories of test processes
// that have ended (goproxy-setup-bin-<pid>-*, ours only).
func removeStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "goproxy-setup-bin-*-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(d), "goproxy-setup-bin-"), "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Lstat(d, &st) != nil || int(st.Uid) != os.Getuid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// QuietHome returns a fresh HOME where the go command keeps telemetry off:
// otherwise a detached telemetry child of a go command may still write into
// it after the test has removed it, leaving a directory behind in /tmp.
func QuietHome(t testing.TB) string {
	t.Helper()
	home := t.TempDir()
	dir := filepath.Join(home, ".config", "go", "telemetry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mode"), []byte("off"), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return home
}

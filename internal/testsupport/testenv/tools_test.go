package testenv

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestRepoRootAndTool(t *testing.T) {
	t.Parallel()
	root := RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, ".ci", "build-tools")); err != nil {
		t.Errorf("RepoRoot = %s, which has no .ci/build-tools: %v", root, err)
	}
	p := Tool(t, "goproxy")
	if want := filepath.Join(root, ".ci", "bin", "goproxy"); p != want {
		t.Errorf("Tool(goproxy) = %s, want %s", p, want)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("Tool(goproxy): %s is not an executable: %v", p, err)
	}
	if again := Tool(t, "goproxy"); again != p {
		t.Errorf("second Tool(goproxy) = %s, want %s", again, p)
	}
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		Tool(ft, "no-such-tool")
	}()
	if !ft.failed {
		t.Errorf("Tool(no-such-tool) did not fail the test")
	}
}

func TestGoEnv(t *testing.T) {
	// Not parallel: t.Setenv.
	t.Setenv("HTTPS_PROXY", "http://canary.invalid:1") // must not leak through
	modcache := t.TempDir()
	env := GoEnv(t, modcache)
	for key, want := range map[string]string{
		"GOTOOLCHAIN": "local",
		"GOFLAGS":     "-mod=mod -modcacherw",
		"GONOSUMDB":   "*",
		"GOSUMDB":     "off",
		"GOPROXY":     "off",
		"GOMODCACHE":  modcache,
		"GOENV":       "off",
		"CGO_ENABLED": "0",
	} {
		if got := EnvValue(env, key); got != want {
			t.Errorf("GoEnv %s = %q, want %q", key, got, want)
		}
	}
	for _, kv := range env {
		if strings.Contains(strings.ToUpper(kv), "PROXY=HTTP") || strings.HasPrefix(kv, "HTTP") {
			t.Errorf("GoEnv leaks %q", kv)
		}
	}
	if home := EnvValue(env, "HOME"); home == os.Getenv("HOME") || home == "" {
		t.Errorf("GoEnv HOME = %q, want a fresh temp dir", home)
	}
	// The go command accepts the environment, and a caller's override wins.
	out, err := RunGo(t, t.TempDir(), append(env, "GOPROXY=http://127.0.0.1:9"), "env", "GOPROXY", "GOMODCACHE", "GOFLAGS")
	if err != nil {
		t.Fatalf("go env: %v\n%s", err, out)
	}
	if want := "http://127.0.0.1:9\n" + modcache + "\n-mod=mod -modcacherw\n"; out != want {
		t.Errorf("go env = %q, want %q", out, want)
	}
}

func TestFreePort(t *testing.T) {
	t.Parallel()
	port := FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("listen on FreePort %d: %v", port, err)
	}
	l.Close()
}

package realci

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// Mods are the modules the real-runner jobs build: a consumer of both is
// built through the agent.
var Mods = []testenv.Module{
	{Path: "example.com/alpha", Version: "v1.0.0"},
	{Path: "example.com/Beta/gamma", Version: "v0.2.0"},
}

// TestVersion is the release the tests publish on the loopback releases
// host.
const TestVersion = "v0.0.1-test"

// Release is the loopback release of TestVersion for this machine's
// platform: the asset's name, the archive and its checksums.txt line.
type Release struct {
	Asset   string
	Archive []byte
	Sums    []byte
}

// NewRelease packs the binary under test as GoReleaser does, as the
// release of TestVersion.
func NewRelease(t testing.TB) Release {
	t.Helper()
	asset := AssetName(TestVersion, runtime.GOOS, runtime.GOARCH)
	archive := Archive(t, testenv.Binary(t))
	return Release{Asset: asset, Archive: archive, Sums: []byte(SumLine(archive, asset))}
}

// WriteFile writes data to p (0644), making its directory.
func WriteFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Indent prefixes every line of s with n spaces (a YAML block scalar's
// body).
func Indent(s string, n int) string {
	p := strings.Repeat(" ", n)
	return p + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+p) + "\n"
}

// HostModCache is this machine's module download cache (GOMODCACHE's
// cache/download): as a file:// GOPROXY, a source build of the action
// fetches goproxy-setup's dependencies from it instead of the internet.
func HostModCache(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
}

// RemoveFileVariableDirs removes, when the test ends, every directory
// gitlab-ci-local wrote "file" variables into on the host
// (/tmp/gitlab-ci-local-file-variables-*, whatever TMPDIR says; besides the
// project's it writes one named "-undefined-<job id>") that holds a file
// containing secret: the test's own key, which no other test has, so tests
// running at the same time never remove each other's.
func RemoveFileVariableDirs(t testing.TB, secret []byte) {
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/tmp/gitlab-ci-local-file-variables-*")
		for _, d := range dirs {
			files, _ := os.ReadDir(d)
			for _, f := range files {
				if b, err := os.ReadFile(filepath.Join(d, f.Name())); err == nil && bytes.Contains(b, secret) {
					os.RemoveAll(d)
					break
				}
			}
		}
	})
}

// RunGitLabCILocal runs gitlab-ci-local in dir with exactly env (Node 22
// put first on its PATH: gitlab-ci-local 4.75.1 crashes on Node 20), a
// fresh --home, no colours and args, and returns its output and the log of
// each job (.gitlab-ci-local/output/JOB.log).
func RunGitLabCILocal(ctx context.Context, t *testing.T, dir string, env []string, args ...string) (string, map[string]string, error) {
	t.Helper()
	root := testenv.RepoRoot(t)
	gcl := Runner(t, root, "gitlab-ci-local")
	cmd := exec.CommandContext(ctx, gcl, append([]string{"--home", t.TempDir(), "--color=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = env
	if nb := NodeBin(root); nb != "" {
		cmd.Env = append(cmd.Env, "PATH="+nb+":"+testenv.EnvValue(env, "PATH"))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("gitlab-ci-local %s ran in %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	logs := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(dir, ".gitlab-ci-local", "output", "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		logs[strings.TrimSuffix(filepath.Base(f), ".log")] = string(b)
	}
	return out.String(), logs, err
}

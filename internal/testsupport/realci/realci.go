// Package realci proves the project's CI front ends in real CI runner
// implementations that nobody here wrote: nektos/act (built from
// .ci/tools/act) runs action.yml and report/ in host mode, and
// gitlab-ci-local (npm, on Node 22 under .ci/node) runs the GitLab template
// with the shell executor. Both need nothing beyond loopback: the workflows
// use only local actions, the upstream is the loopback mTLS stack of
// internal/testsupport/testenv, and a loopback HTTP server stands in for
// the releases host.
//
// The package holds only the helpers the tests share; the tests are the
// point. A runner that is missing skips the tests only outside CI: with CI
// set, a missing runner fails them (.ci/setup installs both).
package realci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Runner finds a runner's executable: .ci/bin/NAME (act) or
// .ci/node/node_modules/.bin/NAME (gitlab-ci-local), else NAME on PATH. A
// missing runner skips the test when CI is unset and fails it when CI is
// set.
func Runner(t testing.TB, root, name string) string {
	t.Helper()
	for _, p := range []string{
		filepath.Join(root, ".ci", "bin", name),
		filepath.Join(root, ".ci", "node", "node_modules", ".bin", name),
	} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (CI is set, so this is a failure): run .ci/setup, which builds act into .ci/bin and installs Node 22 and gitlab-ci-local under .ci/node", name)
	}
	t.Skipf("%s is not installed: run .ci/setup (with CI set this test fails instead)", name)
	return ""
}

// NodeBin returns the directory of the Node 22 that .ci/setup installs
// under .ci/node, to put first on PATH for gitlab-ci-local (it crashes on
// Node 20); "" when there is none, so the node on PATH is used.
func NodeBin(root string) string {
	d := filepath.Join(root, ".ci", "node", "node_modules", "node", "bin")
	if _, err := os.Stat(filepath.Join(d, "node")); err == nil {
		return d
	}
	return ""
}

// CopyRepo copies the repository's files (tracked and untracked, less what
// .gitignore ignores) from root into a fresh directory dst, so a runner can
// use the action and the template from a tree the test may change.
func CopyRepo(t testing.TB, root, dst string) {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files in %s: %v", root, err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if rel == "" {
			continue
		}
		src := filepath.Join(root, rel)
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or a symlink such as .ci/bin
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d, data, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// GitInit makes dir a git repository with one commit: both runners read
// the commit and branch from git.
func GitInit(t testing.TB, dir string) {
	t.Helper()
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "-A"},
		{"-c", "user.email=test@example.com", "-c", "user.name=test", "commit", "-q", "-m", "test"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v in %s: %v\n%s", args, dir, err, out)
		}
	}
}

// AssetName is the archive name GoReleaser gives a release asset
// (.goreleaser.yaml archives.name_template) and scripts/install.sh fetches.
func AssetName(version, goos, goarch string) string {
	ext := "tar.gz"
	if goos == "windows" {
		ext = "zip"
	}
	return fmt.Sprintf("goproxy-setup_%s_%s_%s.%s", strings.TrimPrefix(version, "v"), goos, goarch, ext)
}

// Archive packs binary as GoReleaser's tar.gz does: goproxy-setup at the
// top, with the README beside it.
func Archive(t testing.TB, binary string) []byte {
	t.Helper()
	bin, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"README.md", 0o644, []byte("goproxy-setup\n")},
		{"goproxy-setup", 0o755, bin},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// SumLine is the checksums.txt line of data named name.
func SumLine(data []byte, name string) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:]) + "  " + name + "\n"
}

// ReleaseHost is a loopback HTTP server standing in for the releases host:
// it serves Assets[path] at /VERSION/ASSET and counts the requests.
type ReleaseHost struct {
	URL string

	mu     sync.Mutex
	assets map[string][]byte
	hits   map[string]int
}

// NewReleaseHost starts a ReleaseHost that stops when the test ends.
func NewReleaseHost(t testing.TB) *ReleaseHost {
	h := &ReleaseHost{assets: map[string][]byte{}, hits: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean(r.URL.Path)
		h.mu.Lock()
		h.hits[p]++
		data, ok := h.assets[p]
		h.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

// Put serves data at /version/name.
func (h *ReleaseHost) Put(version, name string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.assets["/"+version+"/"+name] = data
}

// Hits returns how often /version/name was requested.
func (h *ReleaseHost) Hits(version, name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits["/"+version+"/"+name]
}

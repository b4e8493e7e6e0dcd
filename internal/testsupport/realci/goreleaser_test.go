package realci_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/realci"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// TestGoReleaserArchiveInstalls proves the release configuration with the
// real GoReleaser (v2.15.1, built from .ci/tools/goreleaser): `goreleaser
// check` accepts .goreleaser.yaml, and a snapshot release of it, cut down
// to this machine's platform (a build of all five would cost minutes),
// gives the archive name and checksums.txt that scripts/install.sh
// fetches and verifies, holding a static, stripped binary that reports the
// release's version; and (linux/amd64) the release workflow's image step,
// `image --binary-dir dist`, pushes an image carrying exactly that binary.
func TestGoReleaserArchiveInstalls(t *testing.T) {
	t.Parallel()
	root := testenv.RepoRoot(t)
	gr := realci.Runner(t, root, "goreleaser")
	if out, err := exec.Command(gr, "check", "--config", filepath.Join(root, ".goreleaser.yaml")).CombinedOutput(); err != nil {
		t.Fatalf("goreleaser check: %v\n%s", err, out)
	}

	tree := filepath.Join(t.TempDir(), "repo")
	realci.CopyRepo(t, root, tree)
	conf, err := os.ReadFile(filepath.Join(root, ".goreleaser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const targets = "    goos: [linux, darwin]\n    goarch: [amd64, arm64]\n"
	if !strings.Contains(string(conf), targets) {
		t.Fatalf(".goreleaser.yaml lacks the four targets in the form this test cuts down:\n%s", targets)
	}
	host := strings.Replace(string(conf), targets, "    goos: ["+runtime.GOOS+"]\n    goarch: ["+runtime.GOARCH+"]\n", 1)
	realci.WriteFile(t, filepath.Join(tree, ".goreleaser-host.yaml"), []byte(host))
	realci.GitInit(t, tree)
	cmd := exec.CommandContext(t.Context(), gr, "release", "--snapshot", "--clean", "--skip=publish,sbom,validate", "--config", ".goreleaser-host.yaml")
	cmd.Dir = tree
	// HOME: no user git config; the go caches stay the user's, so only
	// the link differs from the build testenv.Binary made.
	goenv, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	caches := strings.Fields(string(goenv))
	testenv.Binary(t)
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "HOME="+t.TempDir(), "GOCACHE="+caches[0], "GOMODCACHE="+caches[1])
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("goreleaser release --snapshot: %v\n%s", err, out)
	}
	dist := filepath.Join(tree, "dist")
	var meta struct{ Tag, Version string }
	if b, err := os.ReadFile(filepath.Join(dist, "metadata.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	version := "v" + meta.Version
	asset := realci.AssetName(version, runtime.GOOS, runtime.GOARCH)
	archive, err := os.ReadFile(filepath.Join(dist, asset))
	if err != nil {
		t.Fatalf("GoReleaser made no %s (the name install.sh fetches): %v", asset, err)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(sums), realci.SumLine(archive, asset); got != want {
		t.Errorf("checksums.txt = %q, want %q", got, want)
	}

	rh := realci.NewReleaseHost(t)
	rh.Put(version, asset, archive)
	bin := t.TempDir()
	install := exec.Command("sh", filepath.Join(root, "scripts", "install.sh"), version, filepath.Join(dist, "checksums.txt"), bin)
	install.Env = append(os.Environ(), "GOPROXY_SETUP_RELEASES_URL="+rh.URL)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("install.sh of GoReleaser's archive: %v\n%s", err, out)
	}
	exe := filepath.Join(bin, "goproxy-setup")
	out, err := exec.Command(exe, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "goproxy-setup " + meta.Tag + " ("; !strings.HasPrefix(string(out), want) {
		t.Errorf("version = %q, want it to start with %q (ldflags)", out, want)
	}
	if runtime.GOOS == "linux" {
		f, err := elf.Open(exe)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("the release binary has a program interpreter: not static (CGO_ENABLED=0)")
			}
		}
		if f.Section(".symtab") != nil {
			t.Errorf("the release binary has a symbol table: not stripped (-s -w)")
		}
		if runtime.GOARCH == "amd64" {
			imageFromDist(t, exe, dist)
		}
	}
}

// imageFromDist is the release workflow's image step: the released binary
// runs `image --binary-dir dist` against a registry on loopback, and the
// image it pushes carries exactly GoReleaser's linux binary.
func imageFromDist(t *testing.T, exe, dist string) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://")

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, data string }{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/bash\nrunner:x:1001:1001::/home/runner:/bin/bash\n"},
		{"etc/group", "root:x:0:\nrunner:x:1001:\n"},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg})
		tw.Write([]byte(f.data))
	}
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	base, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := base.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Config.User = "linux", "amd64", "runner"
	if base, err = mutate.ConfigFile(base, cfg); err != nil {
		t.Fatal(err)
	}
	baseRef, err := name.ParseReference(reg + "/base/runner:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(baseRef, base); err != nil {
		t.Fatal(err)
	}

	tag := reg + "/goproxy-setup/runner:test"
	cmd := exec.Command(exe, "image", "--base", baseRef.String(), "--tag", tag, "--binary-dir", dist)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("image --binary-dir dist: %v\n%s", err, out)
	}
	ref, err := name.ParseReference(tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", tag, err)
	}
	want, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if got := binaryIn(t, layers[len(layers)-1]); !bytes.Equal(got, want) {
		t.Errorf("the image's usr/local/bin/goproxy-setup (%d bytes) is not GoReleaser's linux/amd64 binary (%d bytes)", len(got), len(want))
	}
}

// binaryIn returns usr/local/bin/goproxy-setup from layer l.
func binaryIn(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("the top layer has no usr/local/bin/goproxy-setup: %v", err)
		}
		if strings.TrimPrefix(h.Name, "./") == "usr/local/bin/goproxy-setup" {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// TestReleaseWorkflowLint runs actionlint over the release workflow.
func TestReleaseWorkflowLint(t *testing.T) {
	t.Parallel()
	root := testenv.RepoRoot(t)
	cmd := exec.Command(testenv.Tool(t, "actionlint"), filepath.Join(".github", "workflows", "release.yml"))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("actionlint .github/workflows/release.yml: %v\n%s", err, out)
	}
}

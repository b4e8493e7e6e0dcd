package image

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

const (
	oldPasswd  = "root:x:0:0:root:/root:/bin/bash\n"
	basePasswd = "root:x:0:0:root:/root:/bin/bash\nrunner:x:1001:1001::/home/runner:/bin/bash\nsvc:x:999:999::/nonexistent:/usr/sbin/nologin\n"
	baseGroup  = "root:x:0:\nrunner:x:1001:\nsvc:x:999:\nsudo:x:27:runner\n"
)

// fakeELF writes a minimal ELF header for machine: enough for debug/elf
// and for the image's architecture check.
func fakeELF(t *testing.T, dir string, machine elf.Machine, tag string) string {
	t.Helper()
	var b bytes.Buffer
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: 1, Ehsize: 64}
	copy(h.Ident[:], []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)})
	if err := binary.Write(&b, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	b.WriteString(tag)
	p := filepath.Join(dir, "goproxy-setup-"+tag)
	if err := os.WriteFile(p, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func tarLayer(t *testing.T, mt types.MediaType, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, tarball.WithMediaType(mt))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// baseImage is a small runner-like base: an old /etc/passwd in the lower
// layer, the current one (with runner) in the upper, user runner, an
// entrypoint and a command.
func baseImage(t *testing.T, oci bool, p v1.Platform, user string) v1.Image {
	t.Helper()
	mt, lt := types.DockerManifestSchema2, types.DockerLayer
	var base v1.Image = empty.Image
	if oci {
		mt, lt = types.OCIManifestSchema1, types.OCILayer
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), types.OCIConfigJSON)
	}
	img, err := mutate.AppendLayers(base,
		tarLayer(t, lt, map[string]string{"etc/passwd": oldPasswd, "etc/group": baseGroup, "bin/sh": "#!"}),
		tarLayer(t, lt, map[string]string{"./etc/passwd": basePasswd, "home/runner/run.sh": "#!/bin/sh\n"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	cfg.Config.User = user
	cfg.Config.Entrypoint = []string{"/usr/bin/tini", "--"}
	cfg.Config.Cmd = []string{"/home/runner/run.sh"}
	cfg.Config.Env = []string{"PATH=/usr/bin:/bin", "GOPROXY_SETUP_POLICY=/old"}
	cfg.Config.Labels = map[string]string{"base": "label"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func push(t *testing.T, ref string, x any) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	switch v := x.(type) {
	case v1.Image:
		err = remote.Write(r, v)
	case v1.ImageIndex:
		err = remote.WriteIndex(r, v)
	}
	if err != nil {
		t.Fatal(err)
	}
}

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// baseIndex pushes a two-platform index with an attestation entry, like the
// ones BuildKit pushes.
func baseIndex(t *testing.T, reg string) string {
	t.Helper()
	att, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx,
		mutate.IndexAddendum{Add: baseImage(t, true, amd64, "runner"), Descriptor: v1.Descriptor{Platform: &amd64}},
		mutate.IndexAddendum{Add: baseImage(t, true, arm64, "runner"), Descriptor: v1.Descriptor{Platform: &arm64}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}},
	)
	ref := reg + "/base/runner:multi"
	push(t, ref, idx)
	return ref
}

type tarEntry struct {
	hdr  *tar.Header
	data string
}

func layerEntries(t *testing.T, l v1.Layer) map[string]tarEntry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]tarEntry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = tarEntry{h, string(b)}
	}
}

// checkImage asserts everything Build promises about one platform image.
func checkImage(t *testing.T, img v1.Image, wantBinary string, res *Result, wantLayerType types.MediaType) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 3 {
		t.Fatalf("layers: got %d, want 3 (base 2 + 1)", len(layers))
	}
	if mt, _ := layers[2].MediaType(); mt != wantLayerType {
		t.Errorf("added layer media type: got %s, want %s", mt, wantLayerType)
	}
	entries := layerEntries(t, layers[2])
	agentLine := "goproxy-agent:x:" + itoa(res.AgentUID) + ":" + itoa(res.AgentGID) + ":goproxy-setup agent:/nonexistent:/usr/sbin/nologin\n"
	for _, c := range []struct {
		name     string
		typ      byte
		mode     int64
		uid, gid int
		data     string
	}{
		{"usr/local/bin/goproxy-setup", tar.TypeReg, 0o755, 0, 0, wantBinary},
		{"usr/local/bin/goproxy-setup-entrypoint", tar.TypeReg, 0o755, 0, 0, string(entrypointScript)},
		{"etc/goproxy-setup/policy.hcl", tar.TypeReg, 0o644, 0, 0, "policy = 1\n"},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0, basePasswd + agentLine},
		{"etc/group", tar.TypeReg, 0o644, 0, 0, baseGroup + "goproxy-agent:x:" + itoa(res.AgentGID) + ":\n"},
		{"var/lib/goproxy-setup/", tar.TypeDir, 0o700, res.AgentUID, res.AgentGID, ""},
		{"etc/goproxy-setup/", tar.TypeDir, 0o755, 0, 0, ""},
	} {
		e, ok := entries[c.name]
		if !ok {
			t.Errorf("layer has no %s", c.name)
			continue
		}
		if e.hdr.Typeflag != c.typ || e.hdr.Mode != c.mode || e.hdr.Uid != c.uid || e.hdr.Gid != c.gid {
			t.Errorf("%s: got type %c mode %#o owner %d:%d, want %c %#o %d:%d", c.name, e.hdr.Typeflag, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, c.typ, c.mode, c.uid, c.gid)
		}
		if e.data != c.data {
			t.Errorf("%s: got %q, want %q", c.name, e.data, c.data)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{EntrypointPath, "/usr/bin/tini", "--"}; !slices.Equal(cfg.Config.Entrypoint, want) {
		t.Errorf("entrypoint: got %q, want %q", cfg.Config.Entrypoint, want)
	}
	if want := []string{"/home/runner/run.sh"}; !slices.Equal(cfg.Config.Cmd, want) {
		t.Errorf("cmd: got %q, want %q", cfg.Config.Cmd, want)
	}
	if cfg.Config.User != "runner" {
		t.Errorf("user: got %q, want runner", cfg.Config.User)
	}
	for _, want := range []string{"PATH=/usr/bin:/bin", "GOPROXY_SETUP_POLICY=" + PolicyPath, "GOPROXY_SETUP_STATE_DIR=" + StateDir,
		"GOPROXY_SETUP_AGENT_DIR=" + AgentDir, "GOPROXY_SETUP_AGENT_USER=goproxy-agent", "GOPROXY_SETUP_AGENT_UID=" + itoa(res.AgentUID), "GOPROXY_SETUP_EXEC_AS=runner"} {
		if !slices.Contains(cfg.Config.Env, want) {
			t.Errorf("env: got %q, want it to contain %q", cfg.Config.Env, want)
		}
	}
	if n := len(slices.DeleteFunc(slices.Clone(cfg.Config.Env), func(e string) bool { return !strings.HasPrefix(e, "GOPROXY_SETUP_POLICY=") })); n != 1 {
		t.Errorf("env has GOPROXY_SETUP_POLICY %d times, want once", n)
	}
	wantLabels := map[string]string{
		"base":                              "label",
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.source":   "https://example.invalid/goproxy-setup",
		"org.opencontainers.image.created":  "2026-01-02T03:04:05Z",
	}
	for k, v := range wantLabels {
		if cfg.Config.Labels[k] != v {
			t.Errorf("label %s: got %q, want %q", k, cfg.Config.Labels[k], v)
		}
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations["org.opencontainers.image.source"] != wantLabels["org.opencontainers.image.source"] || m.Annotations["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("manifest annotations: got %v", m.Annotations)
	}
	// The flattened filesystem sees the new accounts on top of the base's.
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("flattened image has no etc/passwd: %v", err)
		}
		if h.Name == "etc/passwd" {
			b, _ := io.ReadAll(tr)
			if !strings.HasSuffix(string(b), agentLine) || !strings.Contains(string(b), "runner:x:1001") {
				t.Errorf("flattened /etc/passwd: got %q", b)
			}
			break
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

var created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func baseOptions(reg, base string) Options {
	return Options{
		Base: base, Tag: reg + "/out/runner:v1", Policy: []byte("policy = 1\n"),
		Version: "v1.2.3", Revision: "abc123", Source: "https://example.invalid/goproxy-setup",
		Created: created, Keychain: authn.NewMultiKeychain(),
	}
}

func TestBuildIndex(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	base := baseIndex(t, reg)
	dir := t.TempDir()
	bins := map[string]string{"linux/amd64": fakeELF(t, dir, elf.EM_X86_64, "amd64"), "linux/arm64": fakeELF(t, dir, elf.EM_AARCH64, "arm64")}
	cases := []struct {
		name      string
		platforms []string
		want      []v1.Platform
	}{
		{"all platforms", nil, []v1.Platform{amd64, arm64}},
		{"one platform", []string{"linux/arm64"}, []v1.Platform{arm64}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := baseOptions(reg, base)
			opts.Tag = reg + "/out/" + strings.ReplaceAll(tc.name, " ", "-") + ":v1"
			opts.Platforms, opts.Binaries = tc.platforms, bins
			res, err := Build(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Index || res.AgentUID != 998 || res.AgentGID != 998 {
				t.Errorf("result: got %+v, want an index with agent 998:998 (999 taken)", res)
			}
			ref, _ := name.ParseReference(res.Ref)
			idx, err := remote.Index(ref)
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if im.MediaType != types.OCIImageIndex {
				t.Errorf("index media type: got %s, want %s", im.MediaType, types.OCIImageIndex)
			}
			if im.Annotations["org.opencontainers.image.version"] != "v1.2.3" {
				t.Errorf("index annotations: got %v", im.Annotations)
			}
			if len(im.Manifests) != len(tc.want) {
				t.Fatalf("index manifests: got %d, want %d (attestation dropped)", len(im.Manifests), len(tc.want))
			}
			for i, d := range im.Manifests {
				if d.Platform == nil || !d.Platform.Equals(tc.want[i]) {
					t.Errorf("manifest %d platform: got %v, want %v", i, d.Platform, tc.want[i])
					continue
				}
				img, err := idx.Image(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				bin, _ := os.ReadFile(bins["linux/"+d.Platform.Architecture])
				checkImage(t, img, string(bin), res, types.OCILayer)
				checkBaseDigest(t, img, base)
			}
		})
	}
}

func TestBuildSingle(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	base := reg + "/base/runner:single"
	push(t, base, baseImage(t, false, amd64, "runner"))
	opts := baseOptions(reg, base)
	opts.Binary = fakeELF(t, t.TempDir(), elf.EM_X86_64, "amd64")
	res, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Index || !slices.Equal(res.Platforms, []string{"linux/amd64"}) {
		t.Errorf("result: got %+v, want one linux/amd64 image", res)
	}
	ref, _ := name.ParseReference(opts.Tag)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != res.Digest {
		t.Errorf("pushed digest: got %s, want %s", d, res.Digest)
	}
	bin, _ := os.ReadFile(opts.Binary)
	checkImage(t, img, string(bin), res, types.DockerLayer)
	checkBaseDigest(t, img, base)
}

// checkBaseDigest asserts that img records the digest that base named when
// it was built (the release pins its base by a version tag).
func checkBaseDigest(t *testing.T, img v1.Image, base string) {
	t.Helper()
	ref, err := name.ParseReference(base)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Config.Labels["org.opencontainers.image.base.digest"], desc.Digest.String(); got != want {
		t.Errorf("label org.opencontainers.image.base.digest: got %q, want %q (the base's digest)", got, want)
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	multi := baseIndex(t, reg)
	single := reg + "/base/runner:single"
	push(t, single, baseImage(t, false, amd64, "runner"))
	rootBase := reg + "/base/root:1"
	push(t, rootBase, baseImage(t, false, amd64, ""))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	amdBin, armBin := fakeELF(t, dir, elf.EM_X86_64, "amd64"), fakeELF(t, dir, elf.EM_AARCH64, "arm64")
	notELF := filepath.Join(dir, "script")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)

	cases := []struct {
		name string
		edit func(*Options)
		kind errkind.Kind
		want string
	}{
		{"bad base reference", func(o *Options) { o.Base = "Not A Ref::" }, errkind.BadInput, `base image reference "Not A Ref::"`},
		{"bad tag", func(o *Options) { o.Tag = "UPPER/case:tag" }, errkind.BadInput, "target reference"},
		{"bad platform", func(o *Options) { o.Platforms = []string{"linux"} }, errkind.BadInput, "want os/arch"},
		{"missing platform", func(o *Options) { o.Base, o.Platforms = multi, []string{"linux/s390x"} }, errkind.BadInput, "the index has no linux/s390x image (it has linux/amd64, linux/arm64/v8)"},
		{"platform of a single image", func(o *Options) { o.Platforms = []string{"linux/arm64"} }, errkind.BadInput, "single linux/amd64 image, not an index"},
		{"missing binary", func(o *Options) { o.Base, o.Binaries, o.Binary = multi, map[string]string{"linux/amd64": amdBin}, "" }, errkind.BadInput, "no goproxy-setup binary for linux/arm64/v8"},
		{"wrong architecture", func(o *Options) { o.Binary = armBin }, errkind.BadInput, "built for EM_AARCH64, not for linux/amd64"},
		{"not an executable", func(o *Options) { o.Binary = notELF }, errkind.BadInput, "not a readable ELF executable"},
		{"base not found", func(o *Options) { o.Base = reg + "/base/none:1" }, errkind.BadInput, "check the reference"},
		{"unreachable registry", func(o *Options) { o.Base = closed + "/base/runner:1" }, errkind.Unreachable, "connection refused"},
		{"unreachable push", func(o *Options) { o.Tag = closed + "/out/runner:1" }, errkind.Unreachable, "push " + closed},
		{"root base", func(o *Options) { o.Base = rootBase }, errkind.BadInput, "pass --user"},
		{"unknown user", func(o *Options) { o.User = "nobody2" }, errkind.BadInput, `user "nobody2" is not in the base`},
		{"agent user clash", func(o *Options) { o.AgentUser, o.AgentUID = "svc", 900 }, errkind.BadInput, `already has user "svc" with uid 999`},
		{"bad agent name", func(o *Options) { o.AgentUser = "Agent!" }, errkind.BadInput, "not a valid account name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := baseOptions(reg, single)
			opts.Binary = amdBin
			tc.edit(&opts)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := Build(ctx, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: got %v, want an error containing %q", err, tc.want)
			}
			if k := errkind.Of(err); k != tc.kind {
				t.Errorf("Build error kind: got %v, want %v (%v)", k, tc.kind, err)
			}
		})
	}
}

// TestReadBaseFilesWhiteout: a deletion in an upper layer hides the lower
// file, and an opaque directory hides the whole lower directory.
func TestReadBaseFilesWhiteout(t *testing.T) {
	t.Parallel()
	lower := tarLayer(t, types.DockerLayer, map[string]string{"etc/passwd": basePasswd, "etc/group": baseGroup})
	cases := []struct {
		name      string
		upper     map[string]string
		wantFound []string
	}{
		{"no change", map[string]string{"x": ""}, []string{"etc/group", "etc/passwd"}},
		{"whiteout", map[string]string{"etc/.wh.passwd": ""}, []string{"etc/group"}},
		{"opaque", map[string]string{"etc/.wh..wh..opq": "", "etc/group": "g:x:5:\n"}, []string{"etc/group"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img, err := mutate.AppendLayers(empty.Image, lower, tarLayer(t, types.DockerLayer, tc.upper))
			if err != nil {
				t.Fatal(err)
			}
			got, err := readBaseFiles(img, "etc/passwd", "etc/group")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for n := range got {
				names = append(names, n)
			}
			slices.Sort(names)
			if !slices.Equal(names, tc.wantFound) {
				t.Errorf("found %v, want %v", names, tc.wantFound)
			}
			if tc.name == "opaque" && string(got["etc/group"].data) != "g:x:5:\n" {
				t.Errorf("etc/group: got %q, want the upper layer's", got["etc/group"].data)
			}
		})
	}
}

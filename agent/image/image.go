// Package image owns the self-hosted runner image base: it appends one layer
// to a base runner image — the goproxy-setup binary, its entrypoint script,
// a default policy, the dedicated agent user in /etc/passwd and /etc/group,
// and the agent's private directory — sets entrypoint, environment, labels
// and OCI annotations, and pushes the result with go-containerregistry, so
// no Docker engine is needed. A multi-platform base (an index) gives a
// multi-platform result, one binary per platform.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/privilege"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// Paths inside the image.
const (
	BinaryPath     = "/usr/local/bin/goproxy-setup"
	EntrypointPath = "/usr/local/bin/goproxy-setup-entrypoint"
	PolicyPath     = "/etc/goproxy-setup/policy.hcl"
	// AgentDir is the agent's private directory (0700, agent user): the
	// client key lives here.
	AgentDir = "/var/lib/goproxy-setup"
	// StateDir is the bootstrap's state directory (pid, port, logs), which
	// the runner user must be able to create.
	StateDir = "/tmp/goproxy-setup"
	// DefaultAgentUser is the agent user's name unless Options say otherwise.
	DefaultAgentUser = "goproxy-agent"
)

// entrypointScript is the shell entrypoint placed at EntrypointPath (the
// Dockerfile copies the same file).
//
//go:embed entrypoint.sh
var entrypointScript []byte

// defaultPolicy is used when Options.Policy is empty.
const defaultPolicy = `# goproxy-setup policy for this runner image (see policies/ for the schema).
privilege {
  # The entrypoint runs the agent as its own user when started as root.
  require_separation = false
}
`

// Options describe the image to build.
type Options struct {
	// Base is the base runner image reference (required).
	Base string
	// Tag is where the result is pushed (required).
	Tag string
	// Platforms selects platforms ("linux/amd64", "linux/arm64/v8") of an
	// index base; empty means all of the index's platforms (attestation
	// entries excluded). For a single-image base it may only name that
	// image's platform.
	Platforms []string
	// Binary is the goproxy-setup binary, used for every selected platform
	// that Binaries does not name; it must be an ELF executable for that
	// platform's architecture.
	Binary string
	// Binaries maps a platform ("linux/arm64") to its binary.
	Binaries map[string]string
	// Policy is the default policy (HCL) written to PolicyPath; a built-in
	// default when empty.
	Policy []byte
	// AgentUser and AgentUID name the agent user added to the image
	// (DefaultAgentUser; uid 0 picks a system id free in every platform's
	// base). A user already in the base is reused.
	AgentUser string
	AgentUID  int
	// User is the non-root user the image runs as (the runner's user). Empty
	// keeps the base's user, which must then be non-root.
	User string
	// Version, Revision and Source fill the OCI labels and annotations
	// org.opencontainers.image.version, .revision and .source.
	Version, Revision, Source string
	// Created is the creation time recorded (now when zero); it is also the
	// layer's file time.
	Created time.Time
	// Keychain resolves registry credentials (authn.DefaultKeychain when nil).
	Keychain authn.Keychain
	// RemoteOptions are added to every registry call (transport, retries).
	RemoteOptions []remote.Option
	// Logger receives progress (silent by default).
	Logger hclog.Logger
}

// Result describes the pushed image.
type Result struct {
	// Ref is the pushed reference with its digest.
	Ref string
	// Digest is the digest of the pushed manifest or index.
	Digest string
	// Platforms are the platforms built, sorted.
	Platforms []string
	// AgentUID and AgentGID are the agent user's ids in the image.
	AgentUID, AgentGID int
	// Index is true when an index was pushed.
	Index bool
}

// platformImage is one selected base image with what Build needs from it.
type platformImage struct {
	platform v1.Platform
	img      v1.Image
	binary   string
	files    map[string]*baseFile
}

// Build builds the runner image from opts and pushes it to opts.Tag.
// Errors are marked: bad references, a missing platform or binary are bad
// input (exit 2); a registry that cannot be reached is unreachable (exit 3).
func Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.AgentUser == "" {
		opts.AgentUser = DefaultAgentUser
	}
	if err := privilege.ValidateName(opts.AgentUser); err != nil {
		return nil, err
	}
	if opts.Created.IsZero() {
		opts.Created = time.Now().UTC().Truncate(time.Second)
	}
	if len(opts.Policy) == 0 {
		opts.Policy = []byte(defaultPolicy)
	}
	baseRef, err := name.ParseReference(opts.Base)
	if err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("base image reference %q: %w: give a reference like ghcr.io/actions/actions-runner:2.336.0", opts.Base, err))
	}
	tag, err := name.ParseReference(opts.Tag)
	if err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("target reference %q: %w: give a reference like registry.example.com/runners/go:1", opts.Tag, err))
	}
	want, err := parsePlatforms(opts.Platforms)
	if err != nil {
		return nil, err
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ropts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}, opts.RemoteOptions...)

	desc, err := remote.Get(baseRef, ropts...)
	if err != nil {
		return nil, registryError("read base image "+baseRef.String(), err)
	}
	images, baseIndex, err := selectPlatforms(desc, want)
	if err != nil {
		return nil, fmt.Errorf("base image %s: %w", baseRef, err)
	}
	for _, pi := range images {
		if pi.binary, err = binaryFor(opts, pi.platform); err != nil {
			return nil, err
		}
		if pi.files, err = readBaseFiles(pi.img, "etc/passwd", "etc/group"); err != nil {
			return nil, registryError(fmt.Sprintf("read /etc/passwd of base %s (%s)", baseRef, pi.platform), err)
		}
	}
	uid, gid, err := agentIDs(images, opts)
	if err != nil {
		return nil, err
	}

	labels := map[string]string{
		"org.opencontainers.image.created":   opts.Created.Format(time.RFC3339),
		"org.opencontainers.image.base.name": baseRef.String(),
		// base.digest records exactly which base was used when the
		// reference is a tag: a release pins the base by version tag and
		// its image says which manifest that tag named at build time.
		"org.opencontainers.image.base.digest": desc.Digest.String(),
		"org.opencontainers.image.title":       "goproxy-setup runner",
		"org.opencontainers.image.description": "runner image with the goproxy-setup agent (mTLS Go module proxy access)",
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  opts.Version,
		"org.opencontainers.image.revision": opts.Revision,
		"org.opencontainers.image.source":   opts.Source,
	} {
		if v != "" {
			labels[k] = v
		}
	}

	res := &Result{AgentUID: uid, AgentGID: gid, Index: baseIndex != nil}
	var adds []mutate.IndexAddendum
	for _, pi := range images {
		img, err := buildOne(pi, opts, uid, gid, labels)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", pi.platform, err)
		}
		p := pi.platform
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		res.Platforms = append(res.Platforms, platformString(p))
	}
	sort.Strings(res.Platforms)

	var digest v1.Hash
	if baseIndex != nil {
		mt, err := baseIndex.MediaType()
		if err != nil {
			return nil, fmt.Errorf("base index media type: %w", err)
		}
		idx := mutate.IndexMediaType(empty.Index, mt)
		idx = mutate.AppendManifests(idx, adds...)
		idx = mutate.Annotations(idx, labels).(v1.ImageIndex)
		if digest, err = idx.Digest(); err != nil {
			return nil, fmt.Errorf("index digest: %w", err)
		}
		opts.Logger.Info("pushing index", "tag", tag.String(), "platforms", res.Platforms)
		if err := remote.WriteIndex(tag, idx, ropts...); err != nil {
			return nil, registryError("push "+tag.String(), err)
		}
	} else {
		img := adds[0].Add.(v1.Image)
		if digest, err = img.Digest(); err != nil {
			return nil, fmt.Errorf("image digest: %w", err)
		}
		opts.Logger.Info("pushing image", "tag", tag.String(), "platform", res.Platforms[0])
		if err := remote.Write(tag, img, ropts...); err != nil {
			return nil, registryError("push "+tag.String(), err)
		}
	}
	res.Digest = digest.String()
	res.Ref = tag.Context().Digest(digest.String()).String()
	return res, nil
}

func parsePlatforms(specs []string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, s := range specs {
		p, err := v1.ParsePlatform(strings.TrimSpace(s))
		if err != nil || p.OS == "" || p.Architecture == "" {
			return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("platform %q: want os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8", s))
		}
		out = append(out, *p)
	}
	return out, nil
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// matches reports whether have is what spec asks for (a spec without a
// variant accepts any variant).
func matches(have, spec v1.Platform) bool {
	return have.OS == spec.OS && have.Architecture == spec.Architecture && (spec.Variant == "" || have.Variant == spec.Variant)
}

// selectPlatforms returns the base images to build on.
func selectPlatforms(desc *remote.Descriptor, want []v1.Platform) ([]*platformImage, v1.ImageIndex, error) {
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		if err != nil {
			return nil, nil, registryError("read image", err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, nil, registryError("read image config", err)
		}
		p := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
		for _, w := range want {
			if !matches(p, w) {
				return nil, nil, errkind.Mark(errkind.BadInput, fmt.Errorf("it is a single %s image, not an index: platform %s is not in it; drop --platform or use a multi-platform base", platformString(p), platformString(w)))
			}
		}
		return []*platformImage{{platform: p, img: img}}, nil, nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, nil, registryError("read index", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, nil, registryError("read index", err)
	}
	var avail []string
	var out []*platformImage
	found := make([]bool, len(want))
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS == "unknown" || !d.MediaType.IsImage() {
			continue // attestations and nested indexes
		}
		avail = append(avail, platformString(*d.Platform))
		take := len(want) == 0
		for i, w := range want {
			if matches(*d.Platform, w) {
				take, found[i] = true, true
			}
		}
		if !take {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, nil, registryError("read "+platformString(*d.Platform)+" image", err)
		}
		out = append(out, &platformImage{platform: *d.Platform, img: img})
	}
	for i, w := range want {
		if !found[i] {
			return nil, nil, errkind.Mark(errkind.BadInput, fmt.Errorf("the index has no %s image (it has %s): choose --platform from those", platformString(w), strings.Join(avail, ", ")))
		}
	}
	if len(out) == 0 {
		return nil, nil, errkind.Mark(errkind.BadInput, errors.New("the index lists no platform images"))
	}
	return out, idx, nil
}

var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM, "386": elf.EM_386,
	"ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
}

// binaryFor returns the binary for p, checked to be an ELF executable for
// p's architecture.
func binaryFor(opts Options, p v1.Platform) (string, error) {
	bin := opts.Binary
	for spec, path := range opts.Binaries {
		sp, err := v1.ParsePlatform(spec)
		if err != nil {
			return "", errkind.Mark(errkind.BadInput, fmt.Errorf("binary platform %q: want os/arch[/variant]", spec))
		}
		if matches(p, *sp) {
			bin = path
		}
	}
	if bin == "" {
		return "", errkind.Mark(errkind.BadInput, fmt.Errorf("no goproxy-setup binary for %s: build one (CGO_ENABLED=0 GOOS=%s GOARCH=%s go build ./cmd/goproxy-setup) and pass it with --binary-dir, or limit --platform", platformString(p), p.OS, p.Architecture))
	}
	f, err := elf.Open(bin)
	if err != nil {
		return "", errkind.Mark(errkind.BadInput, fmt.Errorf("binary %s for %s: not a readable ELF executable: %w", bin, platformString(p), err))
	}
	defer f.Close()
	if want, ok := elfMachine[p.Architecture]; p.OS != "linux" || !ok || f.Machine != want {
		return "", errkind.Mark(errkind.BadInput, fmt.Errorf("binary %s is built for %v, not for %s: build it with GOOS=%s GOARCH=%s", bin, f.Machine, platformString(p), p.OS, p.Architecture))
	}
	return bin, nil
}

// agentIDs returns the agent user's uid and gid: the existing account when
// every base has it with the same ids, else opts.AgentUID (or a system id
// free in every base).
func agentIDs(images []*platformImage, opts Options) (uid, gid int, err error) {
	var allPasswd, allGroup []byte
	existing := map[[2]int]bool{}
	for _, pi := range images {
		passwd, group := pi.content("etc/passwd"), pi.content("etc/group")
		a, ok, err := privilege.LookupAccount(passwd, opts.AgentUser)
		if err != nil {
			return 0, 0, fmt.Errorf("base %s /etc/passwd: %w", pi.platform, err)
		}
		if ok {
			if a.UID == 0 || a.GID == 0 {
				return 0, 0, errkind.Mark(errkind.BadInput, fmt.Errorf("base %s has user %q as root: choose another --agent-user", pi.platform, opts.AgentUser))
			}
			existing[[2]int{a.UID, a.GID}] = true
		}
		allPasswd = append(append(allPasswd, passwd...), '\n')
		allGroup = append(append(allGroup, group...), '\n')
	}
	switch {
	case len(existing) > 1:
		return 0, 0, errkind.Mark(errkind.BadInput, fmt.Errorf("user %q has different ids across the base's platforms: choose another --agent-user", opts.AgentUser))
	case len(existing) == 1:
		for ids := range existing {
			if opts.AgentUID != 0 && ids[0] != opts.AgentUID {
				return 0, 0, errkind.Mark(errkind.BadInput, fmt.Errorf("base already has user %q with uid %d, not %d: pass --agent-uid %d or another --agent-user", opts.AgentUser, ids[0], opts.AgentUID, ids[0]))
			}
			return ids[0], ids[1], nil
		}
	}
	uid = opts.AgentUID
	if uid == 0 {
		if uid, err = privilege.FreeSystemID(allPasswd, allGroup); err != nil {
			return 0, 0, errkind.Mark(errkind.BadInput, err)
		}
	}
	return uid, uid, nil
}

// buildOne appends the layer and sets the config of one platform image.
func buildOne(pi *platformImage, opts Options, uid, gid int, labels map[string]string) (v1.Image, error) {
	cfg, err := pi.img.ConfigFile()
	if err != nil {
		return nil, registryError("read config", err)
	}
	runAs := opts.User
	if runAs == "" {
		runAs = cfg.Config.User
	}
	if u, _, _ := strings.Cut(runAs, ":"); u == "" || u == "root" || u == "0" {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("the base runs as root (user %q): pass --user with the non-root user the runner runs as (e.g. runner)", runAs))
	}
	if u, _, _ := strings.Cut(runAs, ":"); !isNumeric(u) {
		if _, ok, _ := privilege.LookupAccount(pi.content("etc/passwd"), u); !ok {
			return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("user %q is not in the base's /etc/passwd: pass --user with an existing user", u))
		}
	}

	layerTar, err := layerContents(pi, opts, uid, gid)
	if err != nil {
		return nil, err
	}
	mt, err := pi.img.MediaType()
	if err != nil {
		return nil, registryError("read manifest", err)
	}
	layerType := types.DockerLayer
	if mt == types.OCIManifestSchema1 {
		layerType = types.OCILayer
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(layerType))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.Append(pi.img, mutate.Addendum{
		Layer:     layer,
		MediaType: layerType,
		History: v1.History{
			Created:   v1.Time{Time: opts.Created},
			CreatedBy: "goproxy-setup image",
			Comment:   "goproxy-setup binary, entrypoint, policy and agent user " + opts.AgentUser,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cfg, err = img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: opts.Created}
	cfg.Config.User = runAs
	// The script runs first and execs the base's own entrypoint and command.
	cfg.Config.Entrypoint = append([]string{EntrypointPath}, cfg.Config.Entrypoint...)
	runAsName, _, _ := strings.Cut(runAs, ":")
	cfg.Config.Env = setEnv(cfg.Config.Env, map[string]string{
		"GOPROXY_SETUP_POLICY":     PolicyPath,
		"GOPROXY_SETUP_STATE_DIR":  StateDir,
		"GOPROXY_SETUP_AGENT_DIR":  AgentDir,
		"GOPROXY_SETUP_AGENT_USER": opts.AgentUser,
		"GOPROXY_SETUP_AGENT_UID":  strconv.Itoa(uid),
		"GOPROXY_SETUP_EXEC_AS":    runAsName,
	})
	if cfg.Config.Labels == nil {
		cfg.Config.Labels = map[string]string{}
	}
	for k, v := range labels {
		cfg.Config.Labels[k] = v
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

func isNumeric(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// setEnv sets the variables in env (KEY=VALUE), replacing existing ones,
// appending new ones in sorted order.
func setEnv(env []string, vars map[string]string) []string {
	out := slices.Clone(env)
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv := k + "=" + vars[k]
		if i := slices.IndexFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") }); i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

// layerContents returns the uncompressed tar of the added layer.
func layerContents(pi *platformImage, opts Options, uid, gid int) ([]byte, error) {
	bin, err := os.ReadFile(pi.binary)
	if err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read binary: %w", err))
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := opts.Created
	add := func(h *tar.Header, data []byte) error {
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	dir := func(name string, mode int64, uid, gid int) error {
		return add(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid}, nil)
	}
	file := func(name string, mode int64, data []byte) error {
		return add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, data)
	}
	var errs []error
	for _, d := range []string{"etc", "etc/goproxy-setup", "usr", "usr/local", "usr/local/bin", "var", "var/lib"} {
		errs = append(errs, dir(d, 0o755, 0, 0))
	}
	// The agent's private directory, ready for privilege.PrepareDir.
	errs = append(errs, dir(strings.TrimPrefix(AgentDir, "/"), 0o700, uid, gid))
	errs = append(errs,
		file(strings.TrimPrefix(BinaryPath, "/"), 0o755, bin),
		file(strings.TrimPrefix(EntrypointPath, "/"), 0o755, entrypointScript),
		file(strings.TrimPrefix(PolicyPath, "/"), 0o644, opts.Policy),
	)
	passwd, group := pi.content("etc/passwd"), pi.content("etc/group")
	if _, ok, _ := privilege.LookupAccount(passwd, opts.AgentUser); !ok {
		if len(passwd) == 0 {
			passwd = []byte("root:x:0:0:root:/root:/sbin/nologin\n")
		}
		if len(group) == 0 {
			group = []byte("root:x:0:\n")
		}
		np, ng, err := privilege.AppendAccount(passwd, group, privilege.Account{Name: opts.AgentUser, UID: uid, GID: gid, Comment: "goproxy-setup agent"})
		if err != nil {
			return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("add user %q to the base's accounts: %w", opts.AgentUser, err))
		}
		errs = append(errs, file("etc/passwd", pi.mode("etc/passwd", 0o644), np), file("etc/group", pi.mode("etc/group", 0o644), ng))
	}
	errs = append(errs, tw.Close())
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}
	return buf.Bytes(), nil
}

// baseFile is a file read from the base image's layers.
type baseFile struct {
	data []byte
	mode int64
}

func (pi *platformImage) content(name string) []byte {
	if f := pi.files[name]; f != nil {
		return f.data
	}
	return nil
}

func (pi *platformImage) mode(name string, def int64) int64 {
	if f := pi.files[name]; f != nil {
		return f.mode
	}
	return def
}

// readBaseFiles finds names (clean, relative paths) in the image's
// filesystem by reading its layers from the top down, honouring whiteouts
// and opaque directories, and stopping as soon as every name is resolved.
// Absent files are missing from the map.
func readBaseFiles(img v1.Image, names ...string) (map[string]*baseFile, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	found := map[string]*baseFile{}
	resolved := map[string]bool{}
	for i := len(layers) - 1; i >= 0 && len(resolved) < len(names); i-- {
		rc, err := layers[i].Uncompressed()
		if err != nil {
			return nil, err
		}
		opaque := map[string]bool{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				rc.Close()
				return nil, err
			}
			p := path.Clean(strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/"))
			dir, base := path.Split(p)
			if base == ".wh..wh..opq" {
				opaque[strings.TrimSuffix(dir, "/")] = true
				continue
			}
			for _, n := range names {
				if resolved[n] {
					continue
				}
				switch {
				case p == n && h.Typeflag == tar.TypeReg:
					b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
					if err != nil {
						rc.Close()
						return nil, err
					}
					found[n], resolved[n] = &baseFile{data: b, mode: h.Mode & 0o7777}, true
				case p == n:
					rc.Close()
					return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("/%s in the base is not a regular file (type %c): not supported", n, h.Typeflag))
				case p == path.Join(path.Dir(n), ".wh."+path.Base(n)):
					resolved[n] = true // deleted in this layer
				}
			}
		}
		rc.Close()
		for _, n := range names {
			if opaque[path.Dir(n)] {
				resolved[n] = true // lower layers are hidden
			}
		}
	}
	return found, nil
}

// registryError wraps a registry failure with what was being done, marked
// unreachable for network failures and bad input for a missing image or
// refused credentials.
func registryError(what string, err error) error {
	if errkind.Of(err) != errkind.Other {
		return err
	}
	wrapped := fmt.Errorf("%s: %w", what, err)
	var terr *transport.Error
	var nerr net.Error
	var operr *net.OpError
	switch {
	case errors.As(err, &terr):
		switch terr.StatusCode {
		case http.StatusNotFound:
			return errkind.Mark(errkind.BadInput, fmt.Errorf("%w: check the reference (repository and tag)", wrapped))
		case http.StatusUnauthorized, http.StatusForbidden:
			return errkind.Mark(errkind.BadInput, fmt.Errorf("%w: log in to the registry (docker login, or a credential helper)", wrapped))
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return errkind.Mark(errkind.Unreachable, wrapped)
		}
	case errors.As(err, &operr), errors.As(err, &nerr), errors.Is(err, context.DeadlineExceeded):
		return errkind.Mark(errkind.Unreachable, fmt.Errorf("%w: is the registry up and reachable from here?", wrapped))
	}
	return wrapped
}

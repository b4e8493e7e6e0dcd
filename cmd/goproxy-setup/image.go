package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/image"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/version"
)

func init() { register(imageCmd{}) }

// imageCmd appends one layer to the base runner image: the goproxy-setup
// binary, its entrypoint script, a default policy, the agent user in
// /etc/passwd and /etc/group, and the agent's private directory; it sets
// entrypoint, environment, labels and OCI annotations, and pushes to --tag.
// A multi-platform base gives a multi-platform image: each platform needs a
// binary, from --binary-dir (files goproxy-setup-OS-ARCH, built with
// CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build ./cmd/goproxy-setup) or,
// for the platform this binary runs on, this binary itself. Registry
// credentials come from the Docker config and credential helpers.
type imageCmd struct{}

func (imageCmd) Name() string { return "image" }
func (imageCmd) Synopsis() string {
	return "append goproxy-setup to a runner image and push it (no Docker engine needed)"
}

func (imageCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var (
		flagBase, flagTag, flagBinary, flagBinaryDir, flagPolicy string
		flagAgentUser, flagUser, flagSource, flagRevision        string
		flagImageVersion                                         string
		flagAgentUID                                             int
		flagPlatforms                                            stringList
		c                                                        commonFlags
	)
	fs.StringVar(&flagBase, "base", "", "base runner image reference (required), e.g. ghcr.io/actions/actions-runner:2.336.0")
	fs.StringVar(&flagTag, "tag", "", "reference to push the result to (required)")
	fs.Var(&flagPlatforms, "platform", "platforms of a multi-platform base to build, os/arch[/variant], comma-separated or repeated (default: all)")
	fs.StringVar(&flagBinary, "binary", "", "goproxy-setup binary to put in the image (default: this one, for its own platform)")
	fs.StringVar(&flagBinaryDir, "binary-dir", "", "directory with one binary per platform, named goproxy-setup-OS-ARCH[-VARIANT], or a GoReleaser dist directory (its linux binaries, from artifacts.json)")
	fs.StringVar(&flagPolicy, "policy", "", "policy file (HCL) to install as the image's default policy (default: built in)")
	fs.StringVar(&flagAgentUser, "agent-user", image.DefaultAgentUser, "name of the agent user added to the image")
	fs.IntVar(&flagAgentUID, "agent-uid", 0, "uid of the agent user (0: a system id free in the base)")
	fs.StringVar(&flagUser, "user", "", "non-root user the image runs as (default: the base's user, which must not be root)")
	fs.StringVar(&flagImageVersion, "image-version", version.Get(), "value of the org.opencontainers.image.version label")
	fs.StringVar(&flagSource, "source", "https://github.com/goproxy-setup/goproxy-setup", "value of the org.opencontainers.image.source label")
	fs.StringVar(&flagRevision, "revision", "", "value of the org.opencontainers.image.revision label (e.g. the commit)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error, off")
	fs.StringVar(&c.logFormat, "log-format", "", "log format: text or json")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if flagBase == "" || flagTag == "" {
		return usageErrorf("image: --base and --tag are required: e.g. --base ghcr.io/actions/actions-runner:2.336.0 --tag registry.example.com/ci/runner-go:1")
	}
	if fs.NArg() > 0 {
		return usageErrorf("image: unexpected argument %q: every input is a flag", fs.Arg(0))
	}
	opts := image.Options{
		Base: flagBase, Tag: flagTag, Platforms: flagPlatforms,
		AgentUser: flagAgentUser, AgentUID: flagAgentUID, User: flagUser,
		Version: flagImageVersion, Source: flagSource, Revision: flagRevision,
		Logger: newLogger("image", &c, stderr),
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		var sec int64
		if _, err := fmt.Sscan(v, &sec); err != nil {
			return usageErrorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
		}
		opts.Created = time.Unix(sec, 0).UTC()
	}
	if flagPolicy != "" {
		b, err := os.ReadFile(flagPolicy)
		if err != nil {
			return errkind.Mark(errkind.BadInput, fmt.Errorf("--policy: %w", err))
		}
		opts.Policy = b
	}
	switch {
	case flagBinary != "" && flagBinaryDir != "":
		return usageErrorf("image: --binary and --binary-dir exclude each other: give one")
	case flagBinary != "":
		opts.Binary = flagBinary
	case flagBinaryDir != "":
		bins, err := binariesIn(flagBinaryDir)
		if err != nil {
			return err
		}
		opts.Binaries = bins
	default:
		// This very binary serves its own platform; other platforms need
		// --binary-dir (Build names the missing one).
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("image: find this binary: %w", err)
		}
		opts.Binaries = map[string]string{runtime.GOOS + "/" + runtime.GOARCH: self}
	}
	res, err := image.Build(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "pushed %s (%s), agent user %s uid %d\n", flagTag, strings.Join(res.Platforms, ", "), flagAgentUser, res.AgentUID)
	_, err = fmt.Fprintln(stdout, res.Ref)
	return err
}

// binariesIn maps platforms to the files goproxy-setup-OS-ARCH[-VARIANT] in
// dir or, when dir is a GoReleaser dist directory (it has artifacts.json),
// to the linux binaries GoReleaser built: the image then carries exactly
// the release's binaries.
func binariesIn(dir string) (map[string]string, error) {
	if data, err := os.ReadFile(filepath.Join(dir, "artifacts.json")); err == nil {
		return goreleaserBinaries(dir, data)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("--binary-dir: %w", err))
	}
	out := map[string]string{}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "goproxy-setup-")
		if !ok || e.IsDir() {
			continue
		}
		parts := strings.Split(rest, "-")
		if len(parts) < 2 || len(parts) > 3 {
			continue
		}
		out[strings.Join(parts, "/")] = filepath.Join(dir, e.Name())
	}
	if len(out) == 0 {
		return nil, errkind.Mark(errkind.BadInput, errors.New("--binary-dir "+dir+" holds no goproxy-setup-OS-ARCH file nor a GoReleaser artifacts.json: build them with CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -o "+dir+"/goproxy-setup-linux-amd64 ./cmd/goproxy-setup"))
	}
	return out, nil
}

// goreleaserBinaries maps linux/ARCH to the goproxy-setup binaries that
// GoReleaser's artifacts.json (data, in the dist directory dir) lists. Its
// paths are relative to the project directory, the parent of dist.
func goreleaserBinaries(dir string, data []byte) (map[string]string, error) {
	var arts []struct {
		Type, Path, Goos, Goarch string
	}
	if err := json.Unmarshal(data, &arts); err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("--binary-dir: %s: not GoReleaser's artifact list: %w", filepath.Join(dir, "artifacts.json"), err))
	}
	out := map[string]string{}
	for _, a := range arts {
		if a.Type != "Binary" || a.Goos != "linux" || filepath.Base(a.Path) != "goproxy-setup" {
			continue
		}
		p := a.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(dir), p)
		}
		if _, err := os.Stat(p); err != nil {
			return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("--binary-dir: %s lists %s: %w", filepath.Join(dir, "artifacts.json"), a.Path, err))
		}
		out[a.Goos+"/"+a.Goarch] = p
	}
	if len(out) == 0 {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("--binary-dir: %s lists no linux goproxy-setup binary: build the release with GoReleaser first (goreleaser release --clean)", filepath.Join(dir, "artifacts.json")))
	}
	return out, nil
}

// Package version owns the binary's name and version: set by -ldflags at
// release time, read from the build info otherwise.
package version

import (
	"runtime"
	"runtime/debug"
)

// Name is the binary's name.
const Name = "goproxy-setup"

// Version is the release version, set with
// -ldflags "-X github.com/goproxy-setup/goproxy-setup/internal/version.Version=v1.2.3".
var Version = ""

// Get returns the version: the ldflags value, else the module version or VCS
// revision from the build info, else "devel".
func Get() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "devel-" + s.Value[:12]
			}
		}
	}
	return "devel"
}

// Human returns "goproxy-setup VERSION (GOVERSION GOOS/GOARCH)".
func Human() string {
	return Name + " " + Get() + " (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}

// UserAgent is the User-Agent sent upstream.
func UserAgent() string { return Name + "/" + Get() }

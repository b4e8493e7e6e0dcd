package main

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// TestBinariesIn: --binary-dir reads files named goproxy-setup-OS-ARCH or a
// GoReleaser dist directory's artifacts.json (paths relative to the project
// directory, the parent of dist); anything else is bad input naming the
// flag.
func TestBinariesIn(t *testing.T) {
	t.Parallel()
	touch := func(t *testing.T, p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const artifacts = `[
 {"name":"goproxy-setup","path":"dist/goproxy-setup_linux_amd64_v1/goproxy-setup","goos":"linux","goarch":"amd64","goamd64":"v1","type":"Binary"},
 {"name":"goproxy-setup","path":"dist/goproxy-setup_linux_arm64_v8.0/goproxy-setup","goos":"linux","goarch":"arm64","type":"Binary"},
 {"name":"goproxy-setup","path":"dist/goproxy-setup_darwin_arm64_v8.0/goproxy-setup","goos":"darwin","goarch":"arm64","type":"Binary"},
 {"name":"goproxy-setup_1.0.0_linux_amd64.tar.gz","path":"dist/goproxy-setup_1.0.0_linux_amd64.tar.gz","goos":"linux","goarch":"amd64","type":"Archive"}
]`
	cases := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns --binary-dir
		want    map[string]string                     // relative to the returned dir's parent
		wantErr bool
	}{
		{
			name: "named files",
			setup: func(t *testing.T, dir string) string {
				touch(t, filepath.Join(dir, "bins", "goproxy-setup-linux-amd64"))
				touch(t, filepath.Join(dir, "bins", "goproxy-setup-linux-arm64-v8"))
				touch(t, filepath.Join(dir, "bins", "README"))
				return filepath.Join(dir, "bins")
			},
			want: map[string]string{"linux/amd64": "bins/goproxy-setup-linux-amd64", "linux/arm64/v8": "bins/goproxy-setup-linux-arm64-v8"},
		},
		{
			name: "goreleaser dist",
			setup: func(t *testing.T, dir string) string {
				touch(t, filepath.Join(dir, "dist", "goproxy-setup_linux_amd64_v1", "goproxy-setup"))
				touch(t, filepath.Join(dir, "dist", "goproxy-setup_linux_arm64_v8.0", "goproxy-setup"))
				if err := os.WriteFile(filepath.Join(dir, "dist", "artifacts.json"), []byte(artifacts), 0o644); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(dir, "dist")
			},
			want: map[string]string{"linux/amd64": "dist/goproxy-setup_linux_amd64_v1/goproxy-setup", "linux/arm64": "dist/goproxy-setup_linux_arm64_v8.0/goproxy-setup"},
		},
		{
			name: "goreleaser dist with a listed binary missing",
			setup: func(t *testing.T, dir string) string {
				touch(t, filepath.Join(dir, "dist", "goproxy-setup_linux_amd64_v1", "goproxy-setup"))
				if err := os.WriteFile(filepath.Join(dir, "dist", "artifacts.json"), []byte(artifacts), 0o644); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(dir, "dist")
			},
			wantErr: true,
		},
		{
			name: "not an artifact list",
			setup: func(t *testing.T, dir string) string {
				touch(t, filepath.Join(dir, "dist", "artifacts.json"))
				return filepath.Join(dir, "dist")
			},
			wantErr: true,
		},
		{
			name:    "empty",
			setup:   func(t *testing.T, dir string) string { return dir },
			wantErr: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := tc.setup(t, t.TempDir())
			got, err := binariesIn(d)
			if tc.wantErr {
				if err == nil || errkind.Of(err) != errkind.BadInput {
					t.Fatalf("binariesIn(%s) = %v, %v; want a bad-input error", d, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for k, v := range tc.want {
				want[k] = filepath.Join(filepath.Dir(d), v)
			}
			if !maps.Equal(got, want) {
				t.Errorf("binariesIn(%s) = %v, want %v", d, got, want)
			}
		})
	}
}

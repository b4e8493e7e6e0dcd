package warm

import (
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
	"golang.org/x/mod/module"
)

// Bad options and a relative module cache are refused before anything is
// fetched, naming the input.
func TestRunRefusesBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testMods)
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"negative concurrency", func(o *Options) { o.Concurrency = -5 }, "--concurrency -5"},
		{"negative timeout", func(o *Options) { o.Timeout = -5 * time.Second }, "--timeout -5s"},
		{"relative GOMODCACHE", func(o *Options) { o.ModCache = "rel/modcache" }, `GOMODCACHE "rel/modcache" is a relative path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := warmOpts(f, newModCache(t), false)
			tc.edit(&opts)
			sum, err := Run(t.Context(), opts)
			if errkind.Of(err) != errkind.BadInput || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v (kind %v), want a bad-input error containing %q", err, errkind.Of(err), tc.want)
			}
			if sum != nil {
				t.Errorf("summary %+v, want none: nothing started", sum)
			}
		})
	}
}

// A module cache that cannot be written is one local fault naming the
// path and the fix, not one failure per module and not "unreachable".
func TestRunLocalFaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testMods)
	t.Run("file where the cache dir should be", func(t *testing.T) {
		t.Parallel()
		// A file in the way fails for root too, unlike a chmod.
		file := filepath.Join(t.TempDir(), "modcache")
		if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		checkLocal(t, f, file, "not a directory")
	})
	t.Run("full disk", func(t *testing.T) {
		t.Parallel()
		if os.Geteuid() != 0 {
			t.Skip("mounting a tmpfs needs root; CI runs as root (.ci/run), so this runs there")
		}
		big := make([]byte, 2<<20) // incompressible: a 2 MB zip
		rand.Read(big)
		mods := append([]testenv.Module{{Path: "example.test/big", Version: "v1.0.0", Files: map[string]string{"big.go": "package big\n", "blob.bin": string(big)}}}, testMods[1:]...)
		fb := newFixture(t, mods)
		mnt := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
		checkLocal(t, fb, mnt, "no space left on device")
	})
}

func checkLocal(t *testing.T, f *fixture, modcache, want string) {
	t.Helper()
	sum, err := Run(t.Context(), warmOpts(f, modcache, false))
	if err == nil {
		t.Fatal("Run succeeded, want a local fault")
	}
	if k := errkind.Of(err); k != errkind.Local {
		t.Errorf("kind = %v, want local fault: %v", k, err)
	}
	for _, w := range []string{modcache, want, "not the upstream"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if strings.Count(err.Error(), "\n") > 0 {
		t.Errorf("error has several lines, want one local fault: %q", err)
	}
	if sum == nil {
		t.Fatal("no summary")
	}
}

// A cancelled warm ends promptly with one Canceled error, not a failure
// per module.
func TestRunCanceled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testMods)
	f.proxy = faultServer(t, f.proxy, func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return false
	})
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	t0 := time.Now()
	opts := warmOpts(f, newModCache(t), false)
	opts.Concurrency = 1
	_, err := Run(ctx, opts)
	if errkind.Of(err) != errkind.Canceled || strings.Contains(err.Error(), "\n") {
		t.Errorf("Run = %q (kind %v), want one canceled error", err, errkind.Of(err))
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Run took %v after cancel, want prompt", d)
	}
}

func TestDefaultGoSums(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"mod/go.mod":     "module example.test/m\n",
		"mod/go.sum":     "example.test/a v1.0.0 " + hashA + "\n",
		"empty/go.mod":   "module example.test/e\n",
		"empty/go.sum":   "",
		"ws/go.work":     "go 1.21\n\nuse ./a\n",
		"ws/a/go.mod":    "module example.test/a\n",
		"ws/a/go.sum":    "example.test/b v1.0.0 " + hashA + "\n",
		"ws/go.work.sum": "",
	})
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"mod", []string{"mod/go.sum"}},
		{"empty", nil},
		{"ws", []string{"ws/go.work.sum"}},   // a go.work root without go.sum
		{"ws/a", []string{"ws/go.work.sum"}}, // a module of the workspace: cmd/go uses the go.work above
	} {
		got := DefaultGoSums(filepath.Join(root, tc.dir))
		var want []string
		for _, w := range tc.want {
			want = append(want, filepath.Join(root, w))
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("DefaultGoSums(%s) = %v, want %v", tc.dir, got, want)
		}
	}
}

// Under GOFLAGS=-modcacherw (ModCacheRW) extracted trees stay writable,
// as cmd/go leaves them; without it they are read-only.
func TestExtractModCacheRW(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testMods)
	for _, rw := range []bool{true, false} {
		modcache := newModCache(t)
		opts := warmOpts(f, modcache, true)
		opts.ModCacheRW = rw
		if _, err := Run(t.Context(), opts); err != nil {
			t.Fatal(err)
		}
		e, _ := newEntry(modcache, module.Version{Path: "example.test/deep", Version: "v1.0.0"})
		dir, err := os.Stat(filepath.Join(e.xdir, "sub"))
		if err != nil {
			t.Fatal(err)
		}
		file, err := os.Stat(filepath.Join(e.xdir, "README"))
		if err != nil {
			t.Fatal(err)
		}
		wantDir, wantFile := os.FileMode(0o555), os.FileMode(0o444)
		if rw {
			wantDir, wantFile = 0o755, 0o644
		}
		if dir.Mode().Perm()&^0o022 != wantDir&^0o022 || file.Mode().Perm()&^0o022 != wantFile&^0o022 {
			t.Errorf("ModCacheRW=%v: dir %v, file %v; want %v and %v", rw, dir.Mode().Perm(), file.Mode().Perm(), wantDir, wantFile)
		}
	}
	if !hasFlag("-mod=mod -modcacherw", "-modcacherw") || !hasFlag("--modcacherw=true", "-modcacherw") || hasFlag("-modcacherw=false", "-modcacherw") || hasFlag("-mod=mod", "-modcacherw") {
		t.Errorf("hasFlag does not read GOFLAGS as cmd/go does")
	}
}

// go.sum lines the build does not need are left alone, unless AllGoSum:
// then they are warmed best-effort, and one the upstream does not have is
// a warning, not a failure.
func TestAllGoSum(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testMods)
	data, err := os.ReadFile(f.goSum)
	if err != nil {
		t.Fatal(err)
	}
	gone := "example.test/gone v1.0.0 " + f.sums["example.test/deep@v1.0.0"] + "\n"
	if err := os.WriteFile(f.goSum, append(data, gone...), 0o644); err != nil {
		t.Fatal(err)
	}
	unneeded, _ := newEntry("", module.Version{Path: testMods[0].Path, Version: testMods[0].Version})
	for _, all := range []bool{false, true} {
		modcache := newModCache(t)
		opts := warmOpts(f, modcache, false)
		opts.AllGoSum = all
		sum, err := Run(t.Context(), opts)
		if err != nil {
			t.Fatalf("AllGoSum=%v: Run: %v", all, err)
		}
		_, statErr := os.Stat(filepath.Join(modcache, unneeded.base+".zip"))
		if all != (statErr == nil) {
			t.Errorf("AllGoSum=%v: unneeded zip present = %v", all, statErr == nil)
		}
		warned := len(sum.Warnings) == 1 && strings.Contains(sum.Warnings[0], "example.test/gone@v1.0.0") && strings.Contains(sum.Warnings[0], "404")
		if all != warned {
			t.Errorf("AllGoSum=%v: warnings %q", all, sum.Warnings)
		}
	}
}

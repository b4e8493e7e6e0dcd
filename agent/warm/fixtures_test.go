package warm

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/modfile"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// cachingProxy serves a GOPROXY from dir, fetching what dir lacks once
// from upstream (the Go module proxy, the one public host tests may use)
// and keeping it: later runs are local. It records the paths asked for.
type cachingProxy struct {
	url      string
	dir      string
	upstream string
	mu       sync.Mutex
	seen     map[string]bool
}

func newCachingProxy(t *testing.T, dir, upstream string) *cachingProxy {
	t.Helper()
	p := &cachingProxy{dir: dir, upstream: upstream, seen: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		p.mu.Lock()
		p.seen[name] = true
		p.mu.Unlock()
		file := filepath.Join(dir, filepath.FromSlash(name))
		if _, err := os.Stat(file); err != nil {
			if err := p.fetch(r.Context(), name, file); err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
		}
		http.ServeFile(w, r, file)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *cachingProxy) fetch(ctx context.Context, name, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.upstream+"/"+name, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upstream: %s", resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.test-%d", file, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

func (p *cachingProxy) paths() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k := range p.seen {
		out = append(out, k)
	}
	slices.Sort(out)
	p.seen = map[string]bool{}
	return out
}

// On the real go.mod and go.sum of public projects, warm fetches what
// `go mod download` fetches, plus only the .info files that let `go list
// -m all` work offline; on warm's cache alone, offline and read-only, the
// go command downloads, lists, verifies and builds.
func TestWarmRealFixturesMatchGo(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the fixtures' modules (hundreds of MB on the first run) from the Go module proxy; run without -short")
	}
	t.Parallel()
	upstream := goProxyURL(t)
	ucd, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	// The directory goproxy-bench primes: one copy on the machine.
	cacheDir := filepath.Join(ucd, "goproxy-setup-bench", "proxy")
	fixtures := fixturesDir(t)
	for _, tc := range []struct {
		name string
		// pkg is a small real package of the build list that a main
		// package imports for the offline build.
		pkg string
	}{
		{"caddy", "github.com/google/uuid"},
		{"prometheus", "github.com/cespare/xxhash/v2"},
		{"etcd-server", "github.com/coreos/go-semver/semver"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "m")
			stageFixture(t, fixtures, tc.name, dir)
			proxy := newCachingProxy(t, cacheDir, upstream)

			goCache := newModCache(t)
			env := append(testenv.GoEnv(t, goCache), "GOPROXY="+proxy.url, "GOFLAGS=-modcacherw")
			if out, err := testenv.RunGo(t, dir, env, "mod", "download", "-json"); err != nil {
				t.Fatalf("go mod download: %v\n%s", err, lastLines(out, 30))
			}
			goSet := proxy.paths()

			modcache := newModCache(t)
			sum, err := Run(t.Context(), Options{Source: HTTPSource{BaseURL: proxy.url}, GoSumFiles: []string{filepath.Join(dir, "go.sum")}, ModCache: modcache})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			warmSet := proxy.paths()

			off := append(testenv.GoEnv(t, modcache), "GOFLAGS=-modcacherw -mod=readonly")
			list, err := testenv.RunGo(t, dir, off, "list", "-m", "all")
			if err != nil {
				t.Fatalf("GOPROXY=off go list -m all: %v\n%s", err, lastLines(list, 30))
			}
			buildList := map[string]bool{}
			for _, l := range strings.Split(list, "\n") {
				if f := strings.Fields(l); len(f) >= 2 {
					buildList[f[len(f)-2]+"@"+f[len(f)-1]] = true // "path v => repl v" keeps the replacement
				}
			}
			var missing, extra []string
			for _, p := range goSet {
				if !slices.Contains(warmSet, p) {
					missing = append(missing, p)
				}
			}
			for _, p := range warmSet {
				if slices.Contains(goSet, p) {
					continue
				}
				mod, ok := infoModule(p)
				if !ok || !buildList[mod] {
					extra = append(extra, p)
				}
			}
			if len(missing) > 0 || len(extra) > 0 {
				t.Errorf("warm left out %d files go mod download fetched: %v\nwarm fetched %d files beyond it that are not a build-list .info: %v", len(missing), missing, len(extra), extra)
			}
			t.Logf("%s: go mod download fetched %d files, warm %d (%d zips, %d modules)", tc.name, len(goSet), len(warmSet), sum.Zips, sum.Modules)

			for _, args := range [][]string{{"mod", "download"}, {"mod", "verify"}} {
				if out, err := testenv.RunGo(t, dir, off, args...); err != nil {
					t.Errorf("GOPROXY=off go %s: %v\n%s", strings.Join(args, " "), err, lastLines(out, 30))
				}
			}
			main := fmt.Sprintf("package main\n\nimport _ %q\n\nfunc main() {}\n", tc.pkg)
			if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(main), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := testenv.RunGo(t, dir, off, "build", "-o", os.DevNull, "."); err != nil {
				t.Errorf("GOPROXY=off go build (imports %s): %v\n%s", tc.pkg, err, lastLines(out, 30))
			}
		})
	}
}

// infoModule returns "path@version" of a GOPROXY .info path.
func infoModule(p string) (string, bool) {
	esc, file, ok := strings.Cut(p, "/@v/")
	if !ok || !strings.HasSuffix(file, ".info") {
		return "", false
	}
	return unescape(esc) + "@" + strings.TrimSuffix(file, ".info"), true
}

func unescape(esc string) string {
	var b strings.Builder
	for i := 0; i < len(esc); i++ {
		if esc[i] == '!' && i+1 < len(esc) {
			i++
			b.WriteByte(esc[i] - 'a' + 'A')
			continue
		}
		b.WriteByte(esc[i])
	}
	return b.String()
}

// stageFixture writes NAME.go.mod and NAME.go.sum into dir as go.mod and
// go.sum, with a stub module for each directory replacement (etcd's
// ../api): the fixtures carry no source.
func stageFixture(t *testing.T, fixtures, name, dir string) {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join(fixtures, name+".go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	gosum, err := os.ReadFile(filepath.Join(fixtures, name+".go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"go.mod": string(gomod), "go.sum": string(gosum)})
	f, err := modfile.Parse("go.mod", gomod, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range f.Replace {
		if r.New.Version == "" {
			writeFiles(t, filepath.Join(dir, r.New.Path), map[string]string{"go.mod": "module " + r.Old.Path + "\n\ngo " + f.Go.Version + "\n"})
		}
	}
}

// goProxyURL is the first proxy URL of `go env GOPROXY`.
func goProxyURL(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOPROXY").Output()
	if err != nil {
		t.Fatalf("go env GOPROXY: %v", err)
	}
	for _, p := range strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' || r == '|' }) {
		if strings.HasPrefix(p, "http") {
			return strings.TrimSuffix(p, "/")
		}
	}
	t.Fatal("go env GOPROXY names no proxy URL: set GOPROXY to the Go module proxy")
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

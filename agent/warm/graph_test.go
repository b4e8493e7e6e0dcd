package warm

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// graphMods is a module universe with the shapes cmd/go's graph load has
// rules for: pruned (go >= 1.17) and unpruned (no go line) go.mod files,
// a requirement above a root's version, an excluded version, a module
// replacement and a directory replacement.
var graphMods = []testenv.Module{
	{Path: "example.test/a", Version: "v1.0.0", Files: map[string]string{"go.mod": "module example.test/a\n\ngo 1.21\n\nrequire (\n\texample.test/b v1.0.0\n\texample.test/x v1.1.0\n)\n"}},
	{Path: "example.test/b", Version: "v1.0.0", Files: map[string]string{"go.mod": "module example.test/b\n\ngo 1.21\n\nrequire example.test/c v1.0.0\n"}},
	{Path: "example.test/b", Version: "v1.1.0", Files: map[string]string{"go.mod": "module example.test/b\n\ngo 1.21\n\nrequire example.test/c v1.0.0\n"}},
	{Path: "example.test/c", Version: "v1.0.0", Files: map[string]string{"go.mod": "module example.test/c\n\ngo 1.16\n"}},
	{Path: "example.test/old", Version: "v1.0.0", Files: map[string]string{"go.mod": "module example.test/old\n\nrequire example.test/d v1.0.0\n"}},
	{Path: "example.test/d", Version: "v1.0.0", Files: map[string]string{"go.mod": "module example.test/d\n\ngo 1.16\n\nrequire example.test/e v1.0.0\n"}},
	{Path: "example.test/e", Version: "v1.0.0", Files: map[string]string{"go.mod": "module example.test/e\n\ngo 1.16\n\nrequire example.test/c v1.0.0\n"}},
	{Path: "example.test/x", Version: "v1.0.0"},
	{Path: "example.test/x", Version: "v1.1.0"},
	{Path: "example.test/r", Version: "v1.0.0"},
	{Path: "example.test/r2", Version: "v1.0.0"},
	{Path: "example.test/f", Version: "v1.0.0"},
	{Path: "example.test/unused", Version: "v1.0.0"},
}

// recorder serves a GOPROXY and records the paths asked for.
type recorder struct {
	url  string
	mu   sync.Mutex
	seen map[string]bool
}

func newRecorder(t *testing.T, upstream string) *recorder {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	r := &recorder{seen: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen[strings.TrimPrefix(req.URL.Path, "/")] = true
		r.mu.Unlock()
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *recorder) paths() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for p := range r.seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The files warm fetches are exactly those the real `go mod download`
// fetches, for a single module and for a workspace of two; afterwards the
// go command works offline on warm's cache.
func TestWarmFetchesWhatGoModDownloadFetches(t *testing.T) {
	t.Parallel()
	proxyURL, goSum := testenv.NewModuleServer(t, graphMods)
	const mainMod = "module example.test/main\n\ngo 1.21\n\n" +
		"require (\n\texample.test/a v1.0.0\n\texample.test/b v1.1.0 // indirect\n\texample.test/old v1.0.0\n" +
		"\texample.test/x v1.0.0\n\texample.test/r v1.0.0\n\texample.test/l v0.0.0\n)\n\n" +
		"exclude example.test/x v1.1.0\n\n" +
		"replace example.test/r v1.0.0 => example.test/r2 v1.0.0\n\n" +
		"replace example.test/l => ./local\n"
	const localMod = "module example.test/l\n\ngo 1.21\n\nrequire example.test/f v1.0.0\n"
	// A go.work with two modules, the second replacing f by a directory.
	workspace := map[string]string{
		"go.work":      "go 1.21\n\nuse (\n\t./m1\n\t./m2\n)\n",
		"m1/go.mod":    "module example.test/m1\n\ngo 1.21\n\nrequire (\n\texample.test/a v1.0.0\n\texample.test/x v1.1.0\n)\n",
		"m1/go.sum":    string(goSum),
		"m2/go.mod":    "module example.test/m2\n\ngo 1.21\n\nrequire (\n\texample.test/b v1.1.0\n\texample.test/old v1.0.0\n)\n\nreplace example.test/f => ../local\n",
		"m2/go.sum":    string(goSum),
		"local/go.mod": localMod,
	}
	for _, tc := range []struct {
		name      string
		files     map[string]string
		sums      []string // go.sum files given to warm
		extraInfo []string // build-list modules go mod download leaves without .info
	}{
		{
			name:      "module",
			files:     map[string]string{"go.mod": mainMod, "go.sum": string(goSum), "local/go.mod": localMod},
			sums:      []string{"go.sum"},
			extraInfo: []string{"example.test/c/@v/v1.0.0", "example.test/d/@v/v1.0.0", "example.test/e/@v/v1.0.0", "example.test/f/@v/v1.0.0"},
		},
		{
			name: "unpruned module",
			files: map[string]string{
				// Since Go 1.21 a main module's go line is at least
				// every dependency's, so these are all go <= 1.16.
				"go.mod": "module example.test/main\n\ngo 1.16\n\nrequire example.test/old v1.0.0\n",
				"go.sum": string(goSum),
			},
			sums: []string{"go.sum"},
		},
		{
			// A go.work root without go.sum or go.work.sum: the go.sum of
			// every module it uses is what verifies.
			name:  "workspace",
			files: workspace,
			sums:  []string{"go.work.sum"},
		},
		{
			// A module of a workspace: cmd/go uses the go.work above it.
			name:  "workspace via a module's go.sum",
			files: workspace,
			sums:  []string{"m1/go.sum"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)

			goRec := newRecorder(t, proxyURL)
			goCache := newModCache(t)
			env := append(testenv.GoEnv(t, goCache), "GOPROXY="+goRec.url, "GOFLAGS=-modcacherw")
			if out, err := testenv.RunGo(t, dir, env, "mod", "download", "-json"); err != nil {
				t.Fatalf("go mod download: %v\n%s", err, out)
			}

			warmRec := newRecorder(t, proxyURL)
			modcache := newModCache(t)
			var files []string
			for _, s := range tc.sums {
				files = append(files, filepath.Join(dir, s))
			}
			sum, err := Run(t.Context(), Options{Source: HTTPSource{BaseURL: warmRec.url}, GoSumFiles: files, ModCache: modcache, Logger: hclog.New(&hclog.LoggerOptions{Output: testWriter{t}})})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			// Plus the .info of build-list modules go mod download does
			// not download: without them `GOPROXY=off go list -m all`
			// fails on go's own cache ("module lookup disabled").
			got, want := warmRec.paths(), goRec.paths()
			for _, p := range tc.extraInfo {
				want = append(want, p+".info")
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("warm fetched\n\t%s\ngo mod download fetched\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
			if len(sum.Failures) != 0 || sum.Zips == 0 {
				t.Errorf("summary: %d zips, failures %v; want zips and no failure", sum.Zips, sum.Failures)
			}
			// Offline, read-only: cmd/go finds everything it needs.
			off := append(testenv.GoEnv(t, modcache), "GOFLAGS=-modcacherw -mod=readonly")
			for _, args := range [][]string{{"mod", "download"}, {"list", "-m", "all"}, {"mod", "verify"}} {
				if strings.HasPrefix(tc.name, "workspace") && args[0] == "mod" && args[1] == "verify" {
					args = []string{"list", "-m", "-json", "all"}
				}
				if out, err := testenv.RunGo(t, dir, off, args...); err != nil {
					t.Errorf("GOPROXY=off go %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
		})
	}
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

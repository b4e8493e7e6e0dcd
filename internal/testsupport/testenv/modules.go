package testenv

import (
	"bytes"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/modgen"
)

// Module is a generated module version served by the test GOPROXYs (see
// modgen.Module, the one module generator).
type Module = modgen.Module

// DefaultGoVersion is the go line of generated go.mod files.
const DefaultGoVersion = modgen.DefaultGoVersion

// ConsumerModule is the module path of the main module WriteConsumer writes.
const ConsumerModule = modgen.ConsumerModule

// DefaultPackageName returns the package name generated for a module
// without .go files (see modgen.DefaultPackageName).
func DefaultPackageName(modPath string) string { return modgen.DefaultPackageName(modPath) }

func buildAll(t testing.TB, mods []Module) []*modgen.Built {
	t.Helper()
	bs, err := modgen.BuildAll(mods)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return bs
}

// GoSum returns the go.sum lines (zip and /go.mod hashes, sorted) for mods,
// exactly as WriteProxyDir returns them.
func GoSum(t testing.TB, mods []Module) []byte {
	t.Helper()
	return modgen.GoSum(buildAll(t, mods))
}

// WriteProxyDir writes mods into dir in the GOPROXY layout
// (<escaped path>/@v/list, <version>.info, .mod, .zip, and
// <escaped path>/@latest), usable as GOPROXY=file://dir, and returns the
// go.sum lines for all of them. @v/list holds every non-pseudo version of
// a path, as the GOPROXY protocol asks; @latest names the highest version
// (a pseudo-version only when a path has nothing else).
func WriteProxyDir(t testing.TB, dir string, mods []Module) (goSum []byte) {
	t.Helper()
	bs := buildAll(t, mods)
	if err := modgen.WriteProxyDir(dir, bs); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return modgen.GoSum(bs)
}

// NewModuleServer serves mods as a plain-HTTP GOPROXY on 127.0.0.1 until
// the test ends, and returns its URL and the go.sum lines for mods. It
// answers 404 for anything it does not hold, like a real proxy.
func NewModuleServer(t testing.TB, mods []Module) (url string, goSum []byte) {
	t.Helper()
	dir := t.TempDir()
	goSum = WriteProxyDir(t, dir, mods)
	root := os.DirFS(dir)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		data, err := fs.ReadFile(root, name)
		if err != nil || name == "" {
			http.Error(w, "not found: "+name, http.StatusNotFound)
			return
		}
		switch {
		case strings.HasSuffix(name, ".info"), strings.HasSuffix(name, "@latest"):
			w.Header().Set("Content-Type", "application/json")
		case strings.HasSuffix(name, ".zip"):
			w.Header().Set("Content-Type", "application/zip")
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, goSum
}

// WriteConsumer writes a main module into dir that requires every module
// path in mods (the highest version of each), with go.mod, go.sum (the
// lines for all of mods) and main.go importing one package of each module,
// so that `go build ./...` downloads, verifies and compiles them all.
func WriteConsumer(t testing.TB, dir string, mods []Module) {
	t.Helper()
	if err := modgen.WriteConsumer(dir, buildAll(t, mods)); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

package warm

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// benchZip writes a module zip of real Go source (GOROOT/src/net/http and
// below) and returns its path.
func benchZip(tb testing.TB) (string, module.Version) {
	tb.Helper()
	src := filepath.Join(runtime.GOROOT(), "src", "net", "http")
	mod := module.Version{Path: "example.test/nethttp", Version: "v1.0.0"}
	var files []modzip.File
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
			rel, _ := filepath.Rel(src, p)
			files = append(files, osFile{p, filepath.ToSlash(rel)})
		}
		return nil
	})
	files = append(files, memModFile("module example.test/nethttp\n"))
	var buf bytes.Buffer
	if err := modzip.Create(&buf, mod, files); err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(tb.TempDir(), "m.zip")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p, mod
}

type osFile struct{ path, rel string }

func (f osFile) Path() string                 { return f.rel }
func (f osFile) Lstat() (os.FileInfo, error)  { return os.Lstat(f.path) }
func (f osFile) Open() (io.ReadCloser, error) { return os.Open(f.path) }

// hashZip (klauspost inflate) and HashZip agree with dirhash.HashZip.
func TestHashZipMatchesDirhash(t *testing.T) {
	t.Parallel()
	p, mod := benchZip(t)
	want, err := dirhash.HashZip(p, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := hashZip(mod, p, "", false)
	if err != nil || got != want {
		t.Errorf("hashZip = %q, %v; want %q", got, err, want)
	}
	data, _ := os.ReadFile(p)
	got, err = HashZip(bytes.NewReader(data), int64(len(data)))
	if err != nil || got != want {
		t.Errorf("HashZip = %q, %v; want %q", got, err, want)
	}
	if h := goModHash([]byte("module x\n")); h != mustHash1(t, "module x\n") {
		t.Errorf("goModHash = %q, want dirhash's %q", h, mustHash1(t, "module x\n"))
	}
}

// BenchmarkHashZip compares the inflaters: `go test -bench HashZip
// -run XXX ./agent/warm/`.
func BenchmarkHashZip(b *testing.B) {
	p, mod := benchZip(b)
	data, _ := os.ReadFile(p)
	for _, tc := range []struct {
		name   string
		stdlib bool
	}{{"klauspost", false}, {"stdlib", true}} {
		b.Run(tc.name, func(b *testing.B) {
			useStdlibInflate = tc.stdlib
			defer func() { useStdlibInflate = false }()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := hashZip(mod, p, "", false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("dirhash", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := dirhash.HashZip(p, dirhash.Hash1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type memModFile string

func (f memModFile) Path() string                { return "go.mod" }
func (f memModFile) Lstat() (os.FileInfo, error) { return memModInfo{f}, nil }
func (f memModFile) Open() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(f))), nil
}

type memModInfo struct{ f memModFile }

func (i memModInfo) Name() string       { return "go.mod" }
func (i memModInfo) Size() int64        { return int64(len(i.f)) }
func (i memModInfo) Mode() os.FileMode  { return 0o644 }
func (i memModInfo) ModTime() time.Time { return time.Time{} }
func (i memModInfo) IsDir() bool        { return false }
func (i memModInfo) Sys() any           { return nil }

func mustHash1(t *testing.T, gomod string) string {
	t.Helper()
	h, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(gomod)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

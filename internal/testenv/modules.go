package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/token"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// Module is a generated module version served by the test GOPROXYs.
type Module struct {
	// Path is the module path; upper case is allowed (it is escaped with
	// module.EscapePath on disk and in URLs).
	Path string
	// Version is a canonical semantic version, a pseudo-version or a
	// +incompatible version.
	Version string
	// Files maps a slash-separated path relative to the module root to its
	// content. A go.mod is generated when absent ("module Path" and a go
	// line; for +incompatible versions none is put in the zip and the .mod
	// is the synthesized "module Path" that cmd/go expects). When Files
	// holds no .go file, a package file DefaultPackageName(Path)+".go"
	// declaring func Name() string is added.
	Files map[string]string
	// Time is the version's time in the .info file; zero means the
	// pseudo-version's timestamp, or 2024-01-02T03:04:05Z.
	Time time.Time
}

// DefaultGoVersion is the go line of generated go.mod files.
const DefaultGoVersion = "1.21"

// built is one module version in GOPROXY form.
type built struct {
	mod               Module
	escPath, escVer   string
	info, goMod, zip  []byte
	h1Zip, h1Mod      string
	files             map[string]string // effective files, go.mod included unless +incompatible
	defaultPkgCreated bool
}

// DefaultPackageName returns the package name generated for a module
// without .go files: the last path element without a major-version suffix,
// lower-cased, non-identifier runes replaced by '_', with a "p" prefix
// before a leading digit and a "_" suffix after a keyword or "main". The file
// is named after the package (with "_pkg" added where the name would act as
// a GOOS/GOARCH build constraint).
func DefaultPackageName(modPath string) string {
	prefix, _, ok := module.SplitPathVersion(modPath)
	if !ok {
		prefix = modPath
	}
	name := strings.ToLower(path.Base(prefix))
	name = strings.Map(func(r rune) rune {
		if r == '_' || (r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return r
		}
		return '_'
	}, name)
	if name == "" || unicode.IsDigit(rune(name[0])) {
		name = "p" + name
	}
	if token.IsKeyword(name) || name == "main" {
		name += "_"
	}
	return name
}

// defaultPackageFile returns the file name for the generated package: the
// package name, unless that would read as a GOOS/GOARCH or _test suffix
// and so add a build constraint.
func defaultPackageFile(pkg string) string {
	last := pkg[strings.LastIndex(pkg, "_")+1:]
	if last == "test" || strings.Contains(" "+knownOSArch+" ", " "+last+" ") {
		return pkg + "_pkg.go"
	}
	return pkg + ".go"
}

// knownOSArch are the GOOS and GOARCH values that act as file name build
// constraints (go/build's syslist).
const knownOSArch = "aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 solaris wasip1 windows zos " +
	"386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le mips64p32 mips64p32le ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm"

func buildModule(t testing.TB, tmp string, m Module) *built {
	t.Helper()
	if err := module.Check(m.Path, m.Version); err != nil {
		t.Fatalf("testenv: module %s@%s: %v", m.Path, m.Version, err)
	}
	b := &built{mod: m, files: map[string]string{}}
	var err error
	if b.escPath, err = module.EscapePath(m.Path); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if b.escVer, err = module.EscapeVersion(m.Version); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	hasGo := false
	for name, content := range m.Files {
		b.files[name] = content
		if strings.HasSuffix(name, ".go") {
			hasGo = true
		}
	}
	incompatible := strings.HasSuffix(m.Version, "+incompatible")
	goMod, ok := b.files["go.mod"]
	if !ok {
		goMod = "module " + modFileQuote(m.Path) + "\n"
		if !incompatible {
			goMod += "\ngo " + DefaultGoVersion + "\n"
			b.files["go.mod"] = goMod
		}
	}
	if !hasGo {
		pkg := DefaultPackageName(m.Path)
		b.files[defaultPackageFile(pkg)] = fmt.Sprintf("// Package %s is a generated test module.\npackage %s\n\n// Name returns the module path and version.\nfunc Name() string { return %q }\n", pkg, pkg, m.Path+"@"+m.Version)
		b.defaultPkgCreated = true
	}
	b.goMod = []byte(goMod)

	tm := m.Time
	if tm.IsZero() {
		if module.IsPseudoVersion(m.Version) {
			tm, _ = module.PseudoVersionTime(m.Version)
		} else {
			tm = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
		}
	}
	if b.info, err = json.Marshal(struct {
		Version string
		Time    time.Time
	}{m.Version, tm.UTC()}); err != nil {
		t.Fatalf("testenv: %v", err)
	}

	names := make([]string, 0, len(b.files))
	for n := range b.files {
		names = append(names, n)
	}
	sort.Strings(names)
	files := make([]modzip.File, 0, len(names))
	for _, n := range names {
		files = append(files, memFile{name: n, data: []byte(b.files[n])})
	}
	var zbuf bytes.Buffer
	mv := module.Version{Path: m.Path, Version: m.Version}
	if err := modzip.Create(&zbuf, mv, files); err != nil {
		t.Fatalf("testenv: zip %s: %v", mv, err)
	}
	b.zip = zbuf.Bytes()

	zf, err := os.CreateTemp(tmp, "module-*.zip")
	if err == nil {
		_, err = zf.Write(b.zip)
		if cerr := zf.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("testenv: write %s zip: %v", mv, err)
	}
	zipFile := zf.Name()
	if b.h1Zip, err = dirhash.HashZip(zipFile, dirhash.Hash1); err != nil {
		t.Fatalf("testenv: hash %s zip: %v", mv, err)
	}
	if b.h1Mod, err = dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b.goMod)), nil
	}); err != nil {
		t.Fatalf("testenv: hash %s go.mod: %v", mv, err)
	}
	return b
}

// modFileQuote quotes a module path for a go.mod line when needed.
func modFileQuote(p string) string {
	if strings.ContainsAny(p, " \t\"'`") {
		return fmt.Sprintf("%q", p)
	}
	return p
}

func buildAll(t testing.TB, mods []Module) []*built {
	t.Helper()
	tmp := t.TempDir()
	seen := map[string]bool{}
	out := make([]*built, 0, len(mods))
	for _, m := range mods {
		key := m.Path + "@" + m.Version
		if seen[key] {
			t.Fatalf("testenv: module %s listed twice", key)
		}
		seen[key] = true
		out = append(out, buildModule(t, tmp, m))
	}
	return out
}

func goSumOf(bs []*built) []byte {
	var lines []string
	for _, b := range bs {
		lines = append(lines,
			fmt.Sprintf("%s %s %s", b.mod.Path, b.mod.Version, b.h1Zip),
			fmt.Sprintf("%s %s/go.mod %s", b.mod.Path, b.mod.Version, b.h1Mod))
	}
	sort.Strings(lines)
	return []byte(strings.Join(lines, "\n") + "\n")
}

// GoSum returns the go.sum lines (zip and /go.mod hashes, sorted) for mods,
// exactly as WriteProxyDir returns them.
func GoSum(t testing.TB, mods []Module) []byte {
	t.Helper()
	return goSumOf(buildAll(t, mods))
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
	writeProxyDir(t, dir, bs)
	return goSumOf(bs)
}

func writeProxyDir(t testing.TB, dir string, bs []*built) {
	t.Helper()
	byPath := map[string][]*built{}
	var paths []string
	for _, b := range bs {
		if byPath[b.escPath] == nil {
			paths = append(paths, b.escPath)
		}
		byPath[b.escPath] = append(byPath[b.escPath], b)
		v := filepath.Join(dir, filepath.FromSlash(b.escPath), "@v", b.escVer)
		writeFile(t, v+".info", b.info, 0o644)
		writeFile(t, v+".mod", b.goMod, 0o644)
		writeFile(t, v+".zip", b.zip, 0o644)
	}
	for _, p := range paths {
		vs := byPath[p]
		sort.Slice(vs, func(i, j int) bool { return semver.Compare(vs[i].mod.Version, vs[j].mod.Version) < 0 })
		var list strings.Builder
		var latest *built
		for _, b := range vs {
			if !module.IsPseudoVersion(b.mod.Version) {
				list.WriteString(b.mod.Version + "\n")
				latest = b
			}
		}
		if latest == nil {
			latest = vs[len(vs)-1]
		}
		writeFile(t, filepath.Join(dir, filepath.FromSlash(p), "@v", "list"), []byte(list.String()), 0o644)
		writeFile(t, filepath.Join(dir, filepath.FromSlash(p), "@latest"), latest.info, 0o644)
	}
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

// ConsumerModule is the module path of the main module WriteConsumer writes.
const ConsumerModule = "example.test/consumer"

// WriteConsumer writes a main module into dir that requires every module
// path in mods (the highest version of each), with go.mod, go.sum (the
// lines for all of mods) and main.go importing one package of each module,
// so that `go build ./...` downloads, verifies and compiles them all.
func WriteConsumer(t testing.TB, dir string, mods []Module) {
	t.Helper()
	bs := buildAll(t, mods)
	highest := map[string]*built{}
	var paths []string
	for _, b := range bs {
		cur, ok := highest[b.mod.Path]
		if !ok {
			paths = append(paths, b.mod.Path)
		}
		if !ok || semver.Compare(b.mod.Version, cur.mod.Version) > 0 {
			highest[b.mod.Path] = b
		}
	}
	sort.Strings(paths)
	var gomod, imports, body strings.Builder
	fmt.Fprintf(&gomod, "module %s\n\ngo %s\n\nrequire (\n", ConsumerModule, DefaultGoVersion)
	for i, p := range paths {
		b := highest[p]
		fmt.Fprintf(&gomod, "\t%s %s\n", modFileQuote(p), b.mod.Version)
		pkg := importPackage(b)
		if b.defaultPkgCreated {
			fmt.Fprintf(&imports, "\tm%d %q\n", i, pkg)
			fmt.Fprintf(&body, "\tfmt.Println(m%d.Name())\n", i)
		} else {
			fmt.Fprintf(&imports, "\t_ %q\n", pkg)
		}
	}
	gomod.WriteString(")\n")
	main := "// Command consumer imports one package of every test module.\npackage main\n\nimport (\n\t\"fmt\"\n\n" +
		imports.String() + ")\n\nfunc main() {\n\tfmt.Println(\"consumer\")\n" + body.String() + "}\n"
	writeFile(t, filepath.Join(dir, "go.mod"), []byte(gomod.String()), 0o644)
	writeFile(t, filepath.Join(dir, "go.sum"), goSumOf(bs), 0o644)
	writeFile(t, filepath.Join(dir, "main.go"), []byte(main), 0o644)
}

// importPackage returns the import path of a package of b: the module root
// when it holds .go files, else the first directory (sorted) that does,
// skipping testdata, _test.go-only and underscore/dot directories.
func importPackage(b *built) string {
	var dirs []string
	for name := range b.files {
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		d := path.Dir(name)
		skip := false
		for _, e := range strings.Split(d, "/") {
			if e == "testdata" || e == "internal" || strings.HasPrefix(e, "_") || (strings.HasPrefix(e, ".") && e != ".") {
				skip = true
			}
		}
		if !skip {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	if len(dirs) == 0 || slices.Contains(dirs, ".") {
		return b.mod.Path
	}
	return b.mod.Path + "/" + dirs[0]
}

// memFile is an in-memory file for modzip.Create.
type memFile struct {
	name string
	data []byte
}

func (f memFile) Path() string                 { return f.name }
func (f memFile) Lstat() (os.FileInfo, error)  { return memFileInfo{f}, nil }
func (f memFile) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(f.data)), nil }

type memFileInfo struct{ f memFile }

func (fi memFileInfo) Name() string       { return path.Base(fi.f.name) }
func (fi memFileInfo) Size() int64        { return int64(len(fi.f.data)) }
func (fi memFileInfo) Mode() os.FileMode  { return 0o644 }
func (fi memFileInfo) ModTime() time.Time { return time.Time{} }
func (fi memFileInfo) IsDir() bool        { return false }
func (fi memFileInfo) Sys() any           { return nil }

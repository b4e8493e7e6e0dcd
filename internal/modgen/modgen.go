// Package modgen is the project's one generator of Go modules: it builds a
// module version's .info, .mod and .zip in cmd/go's formats with their
// go.sum hashes, writes a set of them in the GOPROXY layout or serves them
// over the GOPROXY protocol, and writes a main module that uses them all.
// The demo, the benchmarks and (through internal/testsupport/testenv) the tests use it;
// it never touches the network.
package modgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/token"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
)

// Module is a module version to generate.
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
	// holds no .go file, a package DefaultPackageName(Path) is added with
	// func Name() string (path@version) and func Version() string.
	Files map[string]string
	// Time is the version's time in the .info file; zero means the
	// pseudo-version's timestamp, or 2024-01-02T03:04:05Z.
	Time time.Time
}

// DefaultGoVersion is the go line of generated go.mod files.
const DefaultGoVersion = "1.21"

// Built is a generated module version in GOPROXY form.
type Built struct {
	Module
	// EscPath and EscVersion are the escaped path and version (GOPROXY
	// URLs and file names).
	EscPath, EscVersion string
	// Info, Mod and Zip are the .info, .mod and .zip contents.
	Info, Mod, Zip []byte
	// ZipHash and ModHash are the go.sum hashes ("h1:...").
	ZipHash, ModHash string
	// Contents are the files in the zip, the generated ones included.
	Contents map[string]string
	// DefaultPackage says the generated package (Name, Version) was added.
	DefaultPackage bool
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

// Build generates m's .info, .mod and .zip and their hashes.
func Build(m Module) (*Built, error) {
	if err := module.Check(m.Path, m.Version); err != nil {
		return nil, fmt.Errorf("generate module %s@%s: %w", m.Path, m.Version, err)
	}
	b := &Built{Module: m, Contents: map[string]string{}}
	var err error
	if b.EscPath, err = module.EscapePath(m.Path); err != nil {
		return nil, fmt.Errorf("generate module: %w", err)
	}
	if b.EscVersion, err = module.EscapeVersion(m.Version); err != nil {
		return nil, fmt.Errorf("generate module: %w", err)
	}
	hasGo := false
	for name, content := range m.Files {
		b.Contents[name] = content
		hasGo = hasGo || strings.HasSuffix(name, ".go")
	}
	incompatible := strings.HasSuffix(m.Version, "+incompatible")
	goMod, ok := b.Contents["go.mod"]
	if !ok {
		goMod = "module " + modFileQuote(m.Path) + "\n"
		if !incompatible {
			goMod += "\ngo " + DefaultGoVersion + "\n"
			b.Contents["go.mod"] = goMod
		}
	}
	if !hasGo {
		pkg := DefaultPackageName(m.Path)
		b.Contents[defaultPackageFile(pkg)] = fmt.Sprintf("// Package %s is a generated module.\npackage %s\n\n// Name returns the module path and version.\nfunc Name() string { return %q }\n\n// Version returns the module version.\nfunc Version() string { return %q }\n", pkg, pkg, m.Path+"@"+m.Version, m.Version)
		b.DefaultPackage = true
	}
	b.Mod = []byte(goMod)

	tm := m.Time
	if tm.IsZero() {
		if module.IsPseudoVersion(m.Version) {
			tm, _ = module.PseudoVersionTime(m.Version)
		} else {
			tm = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
		}
	}
	if b.Info, err = json.Marshal(struct {
		Version string
		Time    time.Time
	}{m.Version, tm.UTC()}); err != nil {
		return nil, fmt.Errorf("generate module info: %w", err)
	}

	names := make([]string, 0, len(b.Contents))
	for n := range b.Contents {
		names = append(names, n)
	}
	sort.Strings(names)
	files := make([]modzip.File, 0, len(names))
	for _, n := range names {
		files = append(files, memFile{name: n, data: []byte(b.Contents[n])})
	}
	var zbuf bytes.Buffer
	mv := module.Version{Path: m.Path, Version: m.Version}
	if err := modzip.Create(&zbuf, mv, files); err != nil {
		return nil, fmt.Errorf("generate module zip %s: %w", mv, err)
	}
	b.Zip = zbuf.Bytes()
	// dirhash over the zip uses "<path>@<version>/<name>" names.
	prefix := mv.Path + "@" + mv.Version + "/"
	full := make([]string, len(names))
	for i, n := range names {
		full[i] = prefix + n
	}
	if b.ZipHash, err = dirhash.Hash1(full, func(n string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(b.Contents[strings.TrimPrefix(n, prefix)])), nil
	}); err != nil {
		return nil, fmt.Errorf("hash %s zip: %w", mv, err)
	}
	if b.ModHash, err = dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b.Mod)), nil
	}); err != nil {
		return nil, fmt.Errorf("hash %s go.mod: %w", mv, err)
	}
	return b, nil
}

// BuildAll builds every module of mods; a version listed twice is an error.
func BuildAll(mods []Module) ([]*Built, error) {
	seen := map[string]bool{}
	out := make([]*Built, 0, len(mods))
	for _, m := range mods {
		key := m.Path + "@" + m.Version
		if seen[key] {
			return nil, fmt.Errorf("module %s listed twice", key)
		}
		seen[key] = true
		b, err := Build(m)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// modFileQuote quotes a module path for a go.mod line when needed.
func modFileQuote(p string) string {
	if strings.ContainsAny(p, " \t\"'`") {
		return fmt.Sprintf("%q", p)
	}
	return p
}

// GoSum returns the go.sum lines (zip and /go.mod hashes) for bs, sorted as
// cmd/go writes them.
func GoSum(bs []*Built) []byte {
	var lines []string
	for _, b := range bs {
		lines = append(lines,
			fmt.Sprintf("%s %s %s", b.Path, b.Version, b.ZipHash),
			fmt.Sprintf("%s %s/go.mod %s", b.Path, b.Version, b.ModHash))
	}
	sort.Strings(lines)
	return []byte(strings.Join(lines, "\n") + "\n")
}

// byPath groups bs by escaped path, each group sorted by version, in the
// order paths first appear.
func byPath(bs []*Built) (paths []string, groups map[string][]*Built) {
	groups = map[string][]*Built{}
	for _, b := range bs {
		if groups[b.EscPath] == nil {
			paths = append(paths, b.EscPath)
		}
		groups[b.EscPath] = append(groups[b.EscPath], b)
	}
	for _, vs := range groups {
		sort.SliceStable(vs, func(i, j int) bool { return semver.Compare(vs[i].Version, vs[j].Version) < 0 })
	}
	return paths, groups
}

// listAndLatest returns a path's @v/list (every non-pseudo version, as the
// GOPROXY protocol asks) and its @latest (the highest listed version, a
// pseudo-version only when a path has nothing else).
func listAndLatest(vs []*Built) (list []byte, latest *Built) {
	var b strings.Builder
	for _, v := range vs {
		if !module.IsPseudoVersion(v.Version) {
			b.WriteString(v.Version + "\n")
			latest = v
		}
	}
	if latest == nil {
		latest = vs[len(vs)-1]
	}
	return []byte(b.String()), latest
}

// WriteProxyDir writes bs into dir in the GOPROXY layout (<escaped
// path>/@v/list, <version>.info, .mod, .zip, and <escaped path>/@latest),
// usable as GOPROXY=file://dir.
func WriteProxyDir(dir string, bs []*Built) error {
	paths, groups := byPath(bs)
	write := func(name string, data []byte) error {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return fmt.Errorf("write proxy dir: %w", err)
		}
		return atomicfile.WriteFile(name, data, 0o644)
	}
	for _, b := range bs {
		v := filepath.Join(dir, filepath.FromSlash(b.EscPath), "@v", b.EscVersion)
		for ext, data := range map[string][]byte{".info": b.Info, ".mod": b.Mod, ".zip": b.Zip} {
			if err := write(v+ext, data); err != nil {
				return err
			}
		}
	}
	for _, p := range paths {
		list, latest := listAndLatest(groups[p])
		if err := write(filepath.Join(dir, filepath.FromSlash(p), "@v", "list"), list); err != nil {
			return err
		}
		if err := write(filepath.Join(dir, filepath.FromSlash(p), "@latest"), latest.Info); err != nil {
			return err
		}
	}
	return nil
}

// Handler serves bs from memory over the GOPROXY protocol (@v/list,
// .info, .mod, .zip and @latest, as WriteProxyDir lays them out); anything
// else is 404.
func Handler(bs []*Built) http.Handler {
	_, groups := byPath(bs)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		if mod, ok := strings.CutSuffix(p, "/@latest"); ok {
			vs := groups[mod]
			if len(vs) == 0 {
				http.NotFound(w, r)
				return
			}
			_, latest := listAndLatest(vs)
			serveBytes(w, "application/json", latest.Info)
			return
		}
		i := strings.LastIndex(p, "/@v/")
		if i < 0 {
			http.NotFound(w, r)
			return
		}
		vs, file := groups[p[:i]], p[i+len("/@v/"):]
		if len(vs) == 0 {
			http.Error(w, "not found: unknown module "+p[:i], http.StatusNotFound)
			return
		}
		if file == "list" {
			list, _ := listAndLatest(vs)
			serveBytes(w, "text/plain; charset=utf-8", list)
			return
		}
		ext := path.Ext(file)
		v, err := module.UnescapeVersion(strings.TrimSuffix(file, ext))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		for _, b := range vs {
			if b.Version != v {
				continue
			}
			switch ext {
			case ".info":
				serveBytes(w, "application/json", b.Info)
			case ".mod":
				serveBytes(w, "text/plain; charset=utf-8", b.Mod)
			case ".zip":
				serveBytes(w, "application/zip", b.Zip)
			default:
				http.NotFound(w, r)
			}
			return
		}
		http.Error(w, fmt.Sprintf("not found: %s@%s: unknown version", p[:i], v), http.StatusNotFound)
	})
}

// serveBytes answers b with its Content-Type and Content-Length, as a
// module proxy serving files does.
func serveBytes(w http.ResponseWriter, contentType string, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}

// ConsumerModule is the module path of the main module WriteConsumer writes.
const ConsumerModule = "example.test/consumer"

// WriteConsumer writes a main module into dir (made when missing) that requires every module
// path in bs (the highest version of each), with go.mod, go.sum (the lines
// for all of bs) and main.go importing one package of each module, so that
// `go build ./...` downloads, verifies and compiles them all. The program
// prints the Version() of every generated package on one line, in the
// order the paths first appear in bs, then each one's Name() on its own.
func WriteConsumer(dir string, bs []*Built) error {
	highest := map[string]*Built{}
	var paths []string
	for _, b := range bs {
		cur, ok := highest[b.Path]
		if !ok {
			paths = append(paths, b.Path)
		}
		if !ok || semver.Compare(b.Version, cur.Version) > 0 {
			highest[b.Path] = b
		}
	}
	var gomod, imports, names strings.Builder
	fmt.Fprintf(&gomod, "module %s\n\ngo %s\n\nrequire (\n", ConsumerModule, DefaultGoVersion)
	var calls []string
	for i, p := range paths {
		b := highest[p]
		fmt.Fprintf(&gomod, "\t%s %s\n", modFileQuote(p), b.Version)
		pkg := importPackage(b)
		if b.DefaultPackage {
			fmt.Fprintf(&imports, "\tm%d %q\n", i, pkg)
			calls = append(calls, fmt.Sprintf("m%d.Version()", i))
			fmt.Fprintf(&names, "\tfmt.Println(m%d.Name())\n", i)
		} else {
			fmt.Fprintf(&imports, "\t_ %q\n", pkg)
		}
	}
	gomod.WriteString(")\n")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write consumer module: %w", err)
	}
	main := "// Command consumer imports one package of every generated module.\npackage main\n\nimport (\n\t\"fmt\"\n\n" +
		imports.String() + ")\n\nfunc main() {\n\tfmt.Println(" + strings.Join(calls, ", ") + ")\n" + names.String() + "}\n"
	for name, data := range map[string][]byte{"go.mod": []byte(gomod.String()), "go.sum": GoSum(bs), "main.go": []byte(main)} {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write consumer module: %w", err)
		}
	}
	return nil
}

// importPackage returns the import path of a package of b: the module root
// when it holds .go files, else the first directory (sorted) that does,
// skipping testdata, _test.go-only and underscore/dot directories.
func importPackage(b *Built) string {
	var dirs []string
	for name := range b.Contents {
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
		return b.Path
	}
	return b.Path + "/" + dirs[0]
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

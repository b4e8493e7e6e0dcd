// Package modgen owns generated Go modules: it builds a module's .mod, .zip
// and .info in cmd/go's formats with their go.sum hashes, and serves a set
// of them over the GOPROXY protocol. The demo uses it to stand up a
// hermetic module proxy; it never touches the network.
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
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// Module is a module to generate: its path, version and files (relative
// path → content). A go.mod is generated when Files has none, and a
// package file when Files has no .go file.
type Module struct {
	Path, Version string
	Files         map[string]string
}

// Built is a generated module in GOPROXY form.
type Built struct {
	Module
	Mod, Zip, Info []byte
	// ZipHash and ModHash are the go.sum hashes ("h1:...").
	ZipHash, ModHash string
}

// PackageName returns the package name generated for a module path: its
// last element without a major-version suffix, as an identifier.
func PackageName(modPath string) string {
	p := modPath
	if pre, _, ok := module.SplitPathVersion(p); ok {
		p = pre
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return -1
	}, path.Base(p))
	if name == "" || name[0] >= '0' && name[0] <= '9' || token.IsKeyword(name) {
		name = "m" + name
	}
	return name
}

// Build generates m's .mod, .zip and .info and their hashes.
func Build(m Module) (*Built, error) {
	if err := module.Check(m.Path, m.Version); err != nil {
		return nil, fmt.Errorf("generate module: %w", err)
	}
	files := map[string]string{}
	hasGo := false
	for k, v := range m.Files {
		files[k] = v
		hasGo = hasGo || strings.HasSuffix(k, ".go")
	}
	if _, ok := files["go.mod"]; !ok {
		files["go.mod"] = fmt.Sprintf("module %s\n\ngo 1.21\n", m.Path)
	}
	if !hasGo {
		pkg := PackageName(m.Path)
		files[pkg+".go"] = fmt.Sprintf("// Package %s is generated.\npackage %s\n\n// Version returns the module version.\nfunc Version() string { return %q }\n", pkg, pkg, m.Version)
	}
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	var zf []modzip.File
	for _, n := range names {
		zf = append(zf, memFile{name: n, data: []byte(files[n])})
	}
	var zb bytes.Buffer
	mv := module.Version{Path: m.Path, Version: m.Version}
	if err := modzip.Create(&zb, mv, zf); err != nil {
		return nil, fmt.Errorf("generate module zip %s: %w", mv, err)
	}
	b := &Built{Module: m, Mod: []byte(files["go.mod"]), Zip: zb.Bytes()}
	var err error
	// dirhash over the zip uses "<path>@<version>/<name>" names.
	if b.ZipHash, err = hashZipBytes(mv, files, names); err != nil {
		return nil, err
	}
	if b.ModHash, err = dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b.Mod)), nil
	}); err != nil {
		return nil, err
	}
	b.Info, _ = json.Marshal(map[string]any{"Version": m.Version, "Time": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	return b, nil
}

func hashZipBytes(mv module.Version, files map[string]string, names []string) (string, error) {
	prefix := mv.Path + "@" + mv.Version + "/"
	full := make([]string, len(names))
	for i, n := range names {
		full[i] = prefix + n
	}
	return dirhash.Hash1(full, func(n string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(files[strings.TrimPrefix(n, prefix)])), nil
	})
}

// GoSum returns the go.sum lines for bs, sorted as cmd/go writes them.
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

// Handler serves bs over the GOPROXY protocol (list, info, mod, zip,
// @latest); anything else is 404.
func Handler(bs []*Built) http.Handler {
	byPath := map[string][]*Built{}
	for _, b := range bs {
		esc, _ := module.EscapePath(b.Path)
		byPath[esc] = append(byPath[esc], b)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		if mod, ok := strings.CutSuffix(p, "/@latest"); ok {
			vs := byPath[mod]
			if len(vs) == 0 {
				http.NotFound(w, r)
				return
			}
			latest := vs[0]
			for _, b := range vs {
				if semver.Compare(b.Version, latest.Version) > 0 {
					latest = b
				}
			}
			w.Write(latest.Info)
			return
		}
		i := strings.LastIndex(p, "/@v/")
		if i < 0 {
			http.NotFound(w, r)
			return
		}
		vs, file := byPath[p[:i]], p[i+len("/@v/"):]
		if len(vs) == 0 {
			http.Error(w, "not found: unknown module "+p[:i], http.StatusNotFound)
			return
		}
		if file == "list" {
			for _, b := range vs {
				fmt.Fprintln(w, b.Version)
			}
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
				w.Write(b.Info)
			case ".mod":
				w.Write(b.Mod)
			case ".zip":
				w.Header().Set("Content-Type", "application/zip")
				w.Write(b.Zip)
			default:
				http.NotFound(w, r)
			}
			return
		}
		http.Error(w, fmt.Sprintf("not found: %s@%s: unknown version", p[:i], v), http.StatusNotFound)
	})
}

// WriteConsumer writes a main module into dir that requires every module
// in bs and imports each one's generated package, with its go.sum.
func WriteConsumer(dir string, bs []*Built) error {
	var mod, main strings.Builder
	mod.WriteString("module example.com/consumer\n\ngo 1.21\n\nrequire (\n")
	main.WriteString("// Command consumer uses every generated module.\npackage main\n\nimport (\n\t\"fmt\"\n\n")
	var calls []string
	for i, b := range bs {
		fmt.Fprintf(&mod, "\t%s %s\n", b.Path, b.Version)
		alias := fmt.Sprintf("m%d", i)
		fmt.Fprintf(&main, "\t%s %q\n", alias, b.Path)
		calls = append(calls, alias+".Version()")
	}
	mod.WriteString(")\n")
	fmt.Fprintf(&main, ")\n\nfunc main() {\n\tfmt.Println(%s)\n}\n", strings.Join(calls, ", "))
	for name, data := range map[string][]byte{"go.mod": []byte(mod.String()), "go.sum": GoSum(bs), "main.go": []byte(main.String())} {
		if err := os.WriteFile(path.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write consumer module: %w", err)
		}
	}
	return nil
}

type memFile struct {
	name string
	data []byte
}

func (f memFile) Path() string                 { return f.name }
func (f memFile) Lstat() (os.FileInfo, error)  { return memInfo(f), nil }
func (f memFile) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(f.data)), nil }

type memInfo memFile

func (fi memInfo) Name() string       { return path.Base(fi.name) }
func (fi memInfo) Size() int64        { return int64(len(fi.data)) }
func (fi memInfo) Mode() os.FileMode  { return 0o644 }
func (fi memInfo) ModTime() time.Time { return time.Time{} }
func (fi memInfo) IsDir() bool        { return false }
func (fi memInfo) Sys() any           { return nil }

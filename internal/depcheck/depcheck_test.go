package depcheck

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const mod = "github.com/goproxy-setup/goproxy-setup"

type pkg struct {
	ImportPath string
	Name       string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, mod), "/") }

// layer ranks the packages: a package may import only packages of a lower
// rank (or internal leaves, see TestInternal).
func layer(p string) int {
	switch r := rel(p); {
	case strings.HasPrefix(r, "cmd/") && strings.Contains(r, "/internal/"):
		return 6 // a command's own library (the demo)
	case strings.HasPrefix(r, "cmd/"):
		return 7
	case r == "agent":
		return 5 // the bootstrap: orchestrates the steps, and the CI glue
	case r == "agent/server", r == "agent/supervisor":
		// The two sides of one process boundary: the agent process and
		// the bootstrap's supervisor of it. Same layer, so neither
		// imports the other: they share agent/wire.
		return 4
	case r == "agent/routes":
		return 3 // the policy's routes as upstream clients (uses proxy's path parser)
	case r == "agent/proxy", r == "agent/warm", r == "agent/ci", r == "agent/image", r == "agent/privilege":
		return 2
	case r == "agent/upstream", r == "agent/diagnose":
		return 1
	case r == "tlsauth", r == "policies", r == "agent/wire":
		return 0
	}
	return -1 // internal/: checked by TestInternal
}

// TestLayersKnown: every package outside internal/ has a layer, so a new
// package cannot slip past TestImportDirection unranked.
func TestLayersKnown(t *testing.T) {
	t.Parallel()
	for _, p := range list(t, "./...") {
		if layer(p.ImportPath) < 0 && !strings.HasPrefix(rel(p.ImportPath), "internal/") {
			t.Errorf("%s has no layer in depcheck: rank it in layer()", rel(p.ImportPath))
		}
	}
}

// testSupport reports whether p is a test harness: imported by tests only.
func testSupport(p string) bool {
	r := rel(p)
	return strings.HasPrefix(r, "internal/testsupport/")
}

// leaf reports whether p is an internal leaf utility: under internal/ and
// not a test harness.
func leaf(p string) bool {
	return strings.HasPrefix(rel(p), "internal/") && !testSupport(p)
}

// TestInternal: internal/ holds leaf utilities only, which import no
// project package but other leaves; test harnesses are imported by tests
// only (never by code that ships); nothing outside a command imports it,
// and the commands' own libraries live under cmd/<name>/internal.
func TestInternal(t *testing.T) {
	t.Parallel()
	for _, p := range list(t, "./...") {
		from := rel(p.ImportPath)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, mod+"/") {
				continue
			}
			to := rel(imp)
			if leaf(p.ImportPath) && !leaf(imp) {
				t.Errorf("%s imports %s: an internal leaf utility imports no project package but other leaves", from, to)
			}
			if testSupport(imp) && !testSupport(p.ImportPath) {
				t.Errorf("%s imports %s outside tests: test harnesses are for tests only", from, to)
			}
			if strings.HasPrefix(to, "cmd/") {
				parts := strings.SplitN(to, "/", 3)
				if own := parts[0] + "/" + parts[1]; from != own && !strings.HasPrefix(from, own+"/") {
					t.Errorf("%s imports %s: nothing imports a command outside its own tree", from, to)
				}
			}
		}
	}
	// The test harnesses are where the tree says, and leaves exist.
	var sawLeaf, sawSupport bool
	for _, p := range list(t, "./internal/...") {
		sawLeaf = sawLeaf || leaf(p.ImportPath)
		sawSupport = sawSupport || strings.HasPrefix(rel(p.ImportPath), "internal/testsupport/")
	}
	if !sawLeaf || !sawSupport {
		t.Errorf("go list ./internal/... found leaves %v, test support %v: want both (is the classification stale?)", sawLeaf, sawSupport)
	}
}

// sameLayerOK are the allowed imports between packages of one layer.
var sameLayerOK = map[string]bool{
	"agent/image -> agent/privilege": true, // the image carries the agent user
}

func TestImportDirection(t *testing.T) {
	t.Parallel()
	for _, p := range list(t, "./...") {
		from := layer(p.ImportPath)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			if strings.HasPrefix(rel(imp), "cmd/") && !strings.HasPrefix(rel(p.ImportPath), "cmd/") {
				t.Errorf("%s imports %s: libraries never import cmd", rel(p.ImportPath), rel(imp))
			}
			to := layer(imp)
			if from >= 0 && to >= 0 && to >= from && rel(imp) != rel(p.ImportPath) {
				if !sameLayerOK[rel(p.ImportPath)+" -> "+rel(imp)] {
					t.Errorf("%s (layer %d) imports %s (layer %d): imports run downwards only", rel(p.ImportPath), from, rel(imp), to)
				}
			}
		}
	}
}

// TestBinaryDeps keeps the shipped binary lean: no step-ca client library,
// no test servers, no testing package.
func TestBinaryDeps(t *testing.T) {
	t.Parallel()
	ps := list(t, "./cmd/goproxy-setup")
	forbidden := []string{
		"github.com/smallstep/certificates",
		"github.com/goproxy/goproxy",
		"github.com/Shopify/toxiproxy",
		"github.com/rhysd/actionlint",
		"testing",
		mod + "/internal/testsupport",
		"github.com/nektos/act",
		"github.com/goreleaser/goreleaser",
	}
	for _, d := range ps[0].Deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("goproxy-setup links %s", d)
			}
		}
	}
}

// TestLibrariesDoNotExit: library packages return errors; only cmd exits,
// and nothing below cmd calls log.Fatal/panic-on-input helpers or prints
// to the process's stdout/stderr directly.
func TestLibrariesDoNotExit(t *testing.T) {
	t.Parallel()
	for _, p := range list(t, "./...") {
		r := rel(p.ImportPath)
		if p.Name == "main" || testSupport(p.ImportPath) {
			continue
		}
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				id, ok := sel.X.(*ast.Ident)
				if !ok {
					return true
				}
				switch id.Name + "." + sel.Sel.Name {
				case "os.Exit", "log.Fatal", "log.Fatalf", "log.Fatalln", "log.Printf", "log.Println", "log.Print", "os.Stdout", "fmt.Println", "fmt.Printf":
					t.Errorf("%s uses %s.%s: libraries return errors and log through an injected logger", filepath.Join(r, f), id.Name, sel.Sel.Name)
				}
				return true
			})
		}
	}
}

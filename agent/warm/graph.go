package warm

// The plan: which files cmd/go reads. The module graph is loaded as
// cmd/go's modload.readModGraph does (Go 1.26): the requirements of the
// main module(s) are the roots; a root's go.mod is read, and its own
// requirements are followed only when the graph is not pruned (a module
// at go < 1.17, or workspace mode, which also reloads dependencies whose
// selected version is above the one a main module requires). Replacements
// (go.work's first, then every main module's; a version-specific one before
// a path-wide one) and exclusions of the main modules apply as cmd/go
// applies them. The build list is the highest version of every path in the
// graph (MVS). `go mod download` then downloads, with .info, .mod and .zip:
// for a single main module at go >= 1.17 the selected version of each
// module its go.mod requires; otherwise (go < 1.17, a workspace) the whole
// build list. Those are exactly the zips warm fetches; the .mod files are
// those the graph load read.

import (
	"context"
	"errors"
	"fmt"
	"go/version"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

type pruning int

const (
	pruned pruning = iota
	unpruned
	workspace
)

// pruningFor returns the graph pruning of a go.mod with go line v.
func pruningFor(v string) pruning {
	if v == "" || version.Compare("go"+v, "go1.17") < 0 {
		return unpruned
	}
	return pruned
}

// mainModule is a module whose source is on disk: the module of a go.mod,
// or one used by a go.work.
type mainModule struct {
	path    string
	dir     string
	file    *modfile.File
	replace map[module.Version]module.Version // dir replacements made absolute
	exclude map[module.Version]bool
}

// project is one graph to load: a single module (go.mod) or a workspace
// (go.work).
type project struct {
	file        string // the go.mod or go.work, for messages
	mains       []*mainModule
	workReplace map[module.Version]module.Version
	pruning     pruning
	goVersion   string // the go line of the go.mod or go.work
	toolchain   string // its toolchain line
	goSums      []string
}

// loadProject reads the go.mod or go.work file name (parse errors are bad
// input, as they are for cmd/go).
func loadProject(name string) (*project, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read %s: %w", name, err))
	}
	p := &project{file: name}
	if filepath.Base(name) != "go.work" {
		m, err := parseMain(name, data)
		if err != nil {
			return nil, err
		}
		p.mains = []*mainModule{m}
		p.goSums = []string{filepath.Join(filepath.Dir(name), "go.sum")}
		if m.file.Go != nil {
			p.goVersion = m.file.Go.Version
		}
		if m.file.Toolchain != nil {
			p.toolchain = m.file.Toolchain.Name
		}
		p.pruning = pruningFor(p.goVersion)
		return p, nil
	}
	wf, err := modfile.ParseWork(name, data, nil)
	if err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("parse go.work: %w: fix it (go help work)", err))
	}
	wdir := filepath.Dir(name)
	p.pruning = workspace
	p.workReplace = replaceMap(wf.Replace, wdir)
	if wf.Go != nil {
		p.goVersion = wf.Go.Version
	}
	if wf.Toolchain != nil {
		p.toolchain = wf.Toolchain.Name
	}
	p.goSums = []string{filepath.Join(wdir, "go.work.sum")}
	for _, u := range wf.Use {
		dir := u.Path
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(wdir, dir)
		}
		gm := filepath.Join(dir, "go.mod")
		data, err := os.ReadFile(gm)
		if err != nil {
			return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("%s: use %s: %w: fix the use directive", name, u.Path, err))
		}
		m, err := parseMain(gm, data)
		if err != nil {
			return nil, err
		}
		p.mains = append(p.mains, m)
		p.goSums = append(p.goSums, filepath.Join(dir, "go.sum"))
	}
	return p, nil
}

func parseMain(name string, data []byte) (*mainModule, error) {
	f, err := modfile.Parse(name, data, nil)
	if err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("parse go.mod: %w: fix it, or run 'go mod tidy'", err))
	}
	if f.Module == nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("%s has no module line: add one, e.g. 'module example.com/m'", name))
	}
	dir := filepath.Dir(name)
	m := &mainModule{path: f.Module.Mod.Path, dir: dir, file: f, replace: replaceMap(f.Replace, dir), exclude: map[module.Version]bool{}}
	for _, x := range f.Exclude {
		m.exclude[x.Mod] = true
	}
	return m, nil
}

// replaceMap indexes replace directives; a directory target is made
// absolute (relative to dir, the go.mod's or go.work's directory).
func replaceMap(reps []*modfile.Replace, dir string) map[module.Version]module.Version {
	m := make(map[module.Version]module.Version, len(reps))
	for _, r := range reps {
		n := r.New
		if n.Version == "" && !filepath.IsAbs(n.Path) {
			n.Path = filepath.Join(dir, n.Path)
		}
		m[r.Old] = n
	}
	return m
}

func lookupReplace(reps map[module.Version]module.Version, m module.Version) (module.Version, bool) {
	if r, ok := reps[m]; ok {
		return r, true
	}
	r, ok := reps[module.Version{Path: m.Path}]
	return r, ok
}

// isMain reports whether m is the on-disk version of a main module.
func (p *project) isMain(m module.Version) bool {
	if m.Version != "" {
		return false
	}
	return slices.ContainsFunc(p.mains, func(mm *mainModule) bool { return mm.path == m.Path })
}

// replacement returns what m is replaced by, or m: a module version, or a
// directory (Version "").
func (p *project) replacement(m module.Version) module.Version {
	if p.isMain(m) {
		return m
	}
	if r, ok := lookupReplace(p.workReplace, m); ok {
		return r
	}
	for _, mm := range p.mains {
		if r, ok := lookupReplace(mm.replace, m); ok {
			return r
		}
	}
	return m
}

// excluded reports whether a main module excludes m.
func (p *project) excluded(m module.Version) bool {
	return slices.ContainsFunc(p.mains, func(mm *mainModule) bool { return mm.exclude[m] })
}

// roots returns the graph's roots: the main modules' requirements (single
// module) or the main modules themselves (workspace).
func (p *project) roots() []module.Version {
	if p.pruning == workspace {
		var rs []module.Version
		for _, m := range p.mains {
			rs = append(rs, module.Version{Path: m.path})
		}
		return rs
	}
	var rs []module.Version
	for _, r := range p.mains[0].file.Require {
		rs = append(rs, r.Mod)
	}
	return rs
}

// summary is what the graph needs of one go.mod.
type summary struct {
	require []module.Version
	pruning pruning
}

// modReader returns the go.mod content of a module version (cached in the
// module cache or fetched, verified against go.sum).
type modReader func(ctx context.Context, m module.Version) ([]byte, error)

// graph is a module graph being loaded.
type graph struct {
	p    *project
	read modReader

	mu       sync.Mutex
	selected map[string]string
	reqs     map[module.Version][]module.Version
	loaded   map[module.Version]*loadOnce
	queued   map[queueKey]bool
	errs     []error
	// problems are errors no fetch recorded: a directory replacement
	// without go.mod, a go.mod that does not parse.
	problems []error
	wg       sync.WaitGroup
}

type queueKey struct {
	m module.Version
	p pruning
}

type loadOnce struct {
	done chan struct{}
	sum  *summary
	err  error
}

// cmpVersion orders versions of one path as cmd/go does: "" (a main
// module) above everything.
func cmpVersion(v1, v2 string) int {
	switch {
	case v1 == v2:
		return 0
	case v1 == "":
		return 1
	case v2 == "":
		return -1
	}
	return semver.Compare(v1, v2)
}

// isToolchain reports whether path is one of the graph's pseudo-modules.
func isToolchain(path string) bool { return path == "go" || path == "toolchain" }

// loadGraph loads p's module graph, reading go.mod files through read.
// Errors of single go.mod files are returned joined; the graph is as
// complete as the readable files make it.
func loadGraph(ctx context.Context, p *project, read modReader) (*graph, error) {
	g := &graph{p: p, read: read, selected: map[string]string{}, reqs: map[module.Version][]module.Version{},
		loaded: map[module.Version]*loadOnce{}, queued: map[queueKey]bool{}}
	roots := p.roots()
	if p.pruning == workspace {
		for _, r := range roots {
			g.selected[r.Path] = ""
		}
	} else {
		g.require(module.Version{Path: p.mains[0].path}, roots)
	}
	for _, r := range roots {
		g.enqueue(ctx, r, p.pruning)
	}
	g.wg.Wait()
	if p.pruning == workspace {
		g.reloadWorkspace(ctx, roots)
	}
	return g, errors.Join(g.errs...)
}

// require records m's requirements in the graph (mvs.Graph.Require).
func (g *graph) require(m module.Version, reqs []module.Version) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reqs[m] = reqs
	for _, r := range reqs {
		if v, ok := g.selected[r.Path]; !ok || cmpVersion(v, r.Version) < 0 {
			g.selected[r.Path] = r.Version
		}
	}
}

func (g *graph) enqueue(ctx context.Context, m module.Version, pr pruning) {
	if m.Version == "none" || isToolchain(m.Path) {
		return
	}
	g.mu.Lock()
	k := queueKey{m, pr}
	if g.queued[k] {
		g.mu.Unlock()
		return
	}
	g.queued[k] = true
	g.mu.Unlock()
	g.wg.Go(func() {
		s, err := g.loadOne(ctx, m)
		if err != nil {
			return
		}
		next := s.pruning
		if pr == unpruned {
			next = unpruned
		}
		for _, r := range s.require {
			if pr != pruned || s.pruning == unpruned {
				g.enqueue(ctx, r, next)
			}
		}
	})
}

// loadOne reads m's go.mod once and adds its requirements to the graph.
func (g *graph) loadOne(ctx context.Context, m module.Version) (*summary, error) {
	g.mu.Lock()
	lo := g.loaded[m]
	if lo != nil {
		g.mu.Unlock()
		<-lo.done
		return lo.sum, lo.err
	}
	lo = &loadOnce{done: make(chan struct{})}
	g.loaded[m] = lo
	g.mu.Unlock()
	lo.sum, lo.err = g.summary(ctx, m)
	if lo.err == nil {
		g.require(m, lo.sum.require)
	} else {
		g.mu.Lock()
		g.errs = append(g.errs, lo.err)
		g.mu.Unlock()
	}
	close(lo.done)
	return lo.sum, lo.err
}

// summary reads the go.mod of m (after replacement) and applies the main
// modules' exclusions (modload.goModSummary).
func (g *graph) summary(ctx context.Context, m module.Version) (*summary, error) {
	var f *modfile.File
	if g.p.isMain(m) {
		for _, mm := range g.p.mains {
			if mm.path == m.Path {
				f = mm.file
			}
		}
	} else {
		actual := g.p.replacement(m)
		var (
			name string
			data []byte
			err  error
		)
		if actual.Version == "" {
			name = filepath.Join(actual.Path, "go.mod")
			if data, err = os.ReadFile(name); err != nil {
				return nil, g.problem(fmt.Errorf("%s@%s is replaced by directory %s, whose go.mod cmd/go cannot read either: %w", m.Path, m.Version, actual.Path, err))
			}
		} else {
			name = actual.Path + "@" + actual.Version + "/go.mod"
			if data, err = g.read(ctx, actual); err != nil {
				return nil, err
			}
		}
		if f, err = modfile.ParseLax(name, data, nil); err != nil {
			return nil, g.problem(fmt.Errorf("parse %s (cmd/go will fail on it too): %w", name, err))
		}
	}
	s := &summary{pruning: unpruned}
	if f.Go != nil {
		s.pruning = pruningFor(f.Go.Version)
	}
	for _, r := range f.Require {
		if !g.p.excluded(r.Mod) {
			s.require = append(s.require, r.Mod)
		}
	}
	return s, nil
}

// problem records err as a problem of the graph and returns it.
func (g *graph) problem(err error) error {
	g.mu.Lock()
	g.problems = append(g.problems, err)
	g.mu.Unlock()
	return err
}

// reloadWorkspace loads the go.mod of every dependency of the main modules
// whose selected version is above the required one, until nothing changes
// (the workspace loop of modload.readModGraph).
func (g *graph) reloadWorkspace(ctx context.Context, roots []module.Version) {
	hasDepsInAll := map[string]bool{}
	seen := map[module.Version]bool{}
	for _, r := range roots {
		hasDepsInAll[r.Path] = true
	}
	for {
		need := map[module.Version]bool{}
		g.mu.Lock()
		for p := range hasDepsInAll {
			m := module.Version{Path: p, Version: g.selected[p]}
			if !seen[m] {
				need[m] = true
				continue
			}
			for _, r := range g.reqs[m] {
				s := module.Version{Path: r.Path, Version: g.selected[r.Path]}
				if cmpVersion(s.Version, r.Version) > 0 && !seen[s] {
					need[s] = true
				}
			}
		}
		g.mu.Unlock()
		if len(need) == 0 {
			return
		}
		for m := range need {
			hasDepsInAll[m.Path] = true
		}
		for m := range need {
			g.enqueue(ctx, m, workspace)
			seen[m] = true
		}
		g.wg.Wait()
	}
}

// buildList returns the selected version of every module path, without
// the main modules and the go and toolchain lines, sorted by path.
func (g *graph) buildList() []module.Version {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []module.Version
	for p, v := range g.selected {
		if isToolchain(p) || g.p.isMain(module.Version{Path: p, Version: v}) || v == "none" {
			continue
		}
		out = append(out, module.Version{Path: p, Version: v})
	}
	slices.SortFunc(out, func(a, b module.Version) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// downloads returns the module versions `go mod download` (no arguments)
// downloads, replacements applied; directory replacements are left out
// (cmd/go reads them from disk).
func (g *graph) downloads() []module.Version {
	var mods []module.Version
	if g.p.pruning == pruned {
		g.mu.Lock()
		for _, r := range g.p.mains[0].file.Require {
			mods = append(mods, module.Version{Path: r.Mod.Path, Version: g.selected[r.Mod.Path]})
		}
		g.mu.Unlock()
	} else {
		mods = g.buildList()
	}
	var out []module.Version
	seen := map[module.Version]bool{}
	for _, m := range mods {
		a := g.p.replacement(m)
		if a.Version == "" || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	return out
}

// speculativeDownloads returns, for a pruned single module, the zips to
// start before the graph is loaded: each requirement at the version the
// go.mod names, which is the selected one in any go.mod cmd/go accepts
// (cmd/go refuses a pruned go.mod whose roots are not selected, asking for
// 'go mod tidy'). Nil for other graphs.
func (p *project) speculativeDownloads() []module.Version {
	if p.pruning != pruned {
		return nil
	}
	var out []module.Version
	seen := map[module.Version]bool{}
	for _, r := range p.mains[0].file.Require {
		a := p.replacement(r.Mod)
		if a.Version == "" || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	return out
}

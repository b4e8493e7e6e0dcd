package warm

// Inputs: the go.sum files, and the go.mod or go.work that says which
// graph to load for each.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// inputs are the parsed go.sum files and the graphs to load.
type inputs struct {
	sums     map[string]*Sum // "path@version" and "path@version/go.mod"
	projects []*project
	// lineByLine are the lines of go.sum files with no go.mod or go.work
	// next to them: warmed as listed.
	lineByLine []*Sum
	// all are every line, for AllGoSum.
	all []*Sum
}

// sumKey is the key of a go.sum line in inputs.sums.
func sumKey(m module.Version, gomod bool) string {
	if gomod {
		return m.Path + "@" + m.Version + "/go.mod"
	}
	return m.Path + "@" + m.Version
}

// readInputs reads the go.sum files, and the go.mod or go.work next to
// each with the go.sum files a workspace brings. Errors of all files are
// returned together.
func readInputs(files []string, log hclog.Logger) (*inputs, error) {
	in := &inputs{sums: map[string]*Sum{}}
	var errs []error
	seenProject := map[string]bool{}
	seenSum := map[string]bool{}
	addSums := func(file string, required bool) []*Sum {
		abs, _ := filepath.Abs(file)
		if seenSum[abs] {
			return nil
		}
		seenSum[abs] = true
		data, err := os.ReadFile(file)
		if err != nil {
			if required || !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, errkind.Mark(errkind.BadInput, fmt.Errorf("read go.sum: %w: name an existing file with --go-sum", err)))
			}
			return nil
		}
		sums, err := ParseGoSum(file, data)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		var out []*Sum
		for i := range sums {
			s := &sums[i]
			k := sumKey(module.Version{Path: s.Path, Version: s.Version}, s.GoMod)
			if prev := in.sums[k]; prev != nil {
				if prev.Hash != s.Hash {
					// cmd/go checks against the first h1 line it read
					// and fails on a mismatch, so the first line wins.
					log.Warn("conflicting go.sum lines: the first one is used, as cmd/go does",
						"module", s.Path, "version", s.Version, "used", prev.Where(), "ignored", s.Where())
				}
				continue
			}
			in.sums[k] = s
			in.all = append(in.all, s)
			out = append(out, s)
		}
		return out
	}
	for _, file := range files {
		c := companion(file)
		// A workspace need not have a go.work.sum: its modules' go.sum
		// files verify what they use.
		_, werr := os.Stat(c)
		lines := addSums(file, !(filepath.Base(file) == "go.work.sum" && werr == nil))
		if c == "" {
			in.lineByLine = append(in.lineByLine, lines...)
			continue
		}
		if _, err := os.Stat(c); err != nil {
			log.Warn("no go.mod or go.work next to the go.sum: warming every line of it", "go.sum", file, "missing", c)
			in.lineByLine = append(in.lineByLine, lines...)
			continue
		}
		abs, _ := filepath.Abs(c)
		if seenProject[abs] {
			continue
		}
		seenProject[abs] = true
		p, err := loadProject(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, gs := range p.goSums {
			addSums(gs, false)
		}
		in.projects = append(in.projects, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return in, nil
}

// companion returns the go.mod (or go.work) file that goes with a go.sum:
// for a go.sum, the go.work cmd/go would use in its directory (GOWORK, or
// the first go.work in it or a parent directory), else its go.mod.
func companion(goSum string) string {
	dir, base := filepath.Split(goSum)
	if base == "go.sum" {
		if w := findGoWork(dir); w != "" {
			return w
		}
	}
	switch {
	case base == "go.work.sum":
		return filepath.Join(dir, "go.work")
	case strings.HasSuffix(base, ".sum"):
		return filepath.Join(dir, strings.TrimSuffix(base, ".sum")+".mod")
	}
	return ""
}

// findGoWork returns the go.work cmd/go uses for a module in dir, or "".
func findGoWork(dir string) string {
	switch gw := os.Getenv("GOWORK"); gw {
	case "off":
		return ""
	case "":
	default:
		return gw
	}
	d, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		if fi, err := os.Stat(filepath.Join(d, "go.work")); err == nil && !fi.IsDir() {
			return filepath.Join(d, "go.work")
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}

// DefaultGoSums returns the files to warm for the module or workspace in
// dir when none are named: the go.work.sum of the workspace cmd/go uses
// there (GOWORK, or the first go.work in dir or a parent directory; the
// file need not exist, since the go.sum of every module the workspace
// uses comes with it), else dir's go.sum when it has lines. Nil when there
// is nothing to warm.
func DefaultGoSums(dir string) []string {
	if w := findGoWork(dir); w != "" {
		return []string{filepath.Join(filepath.Dir(w), "go.work.sum")}
	}
	p := filepath.Join(dir, "go.sum")
	if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
		return []string{p}
	}
	return nil
}

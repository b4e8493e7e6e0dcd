package proxy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/mod/module"
)

// Kind is the kind of a GOPROXY protocol request.
type Kind int

// Request kinds.
const (
	KindList Kind = iota + 1
	KindInfo
	KindMod
	KindZip
	KindLatest
	KindSumDB
)

func (k Kind) String() string {
	return [...]string{"", "list", "info", "mod", "zip", "latest", "sumdb"}[k]
}

// Request is a parsed GOPROXY protocol path.
type Request struct {
	Kind Kind
	// Module and Version are unescaped (Version empty for list, latest and
	// sumdb).
	Module, Version string
	// Path is the escaped path to forward, relative to the proxy root.
	Path string
}

// ParsePath parses a GOPROXY protocol path (relative to the proxy root, no
// leading slash, as it arrived: still escaped with cmd/go's '!' case
// encoding). It accepts <module>/@v/list, <module>/@v/<version>.info|.mod|.zip,
// <module>/@latest and sumdb/<name>/supported|lookup/...|tile/..., and
// rejects anything else, including traversal and percent-encoding.
func ParsePath(p string) (Request, error) {
	if p == "" {
		return Request{}, errors.New("empty path")
	}
	if strings.ContainsAny(p, "%\\\x00?#") {
		return Request{}, errors.New("path contains an encoded or forbidden character")
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return Request{}, errors.New("path has an empty, '.' or '..' element")
		}
	}
	if rest, ok := strings.CutPrefix(p, "sumdb/"); ok {
		return parseSumDB(p, rest)
	}
	if mod, ok := strings.CutSuffix(p, "/@latest"); ok {
		m, err := unescapeModule(mod)
		if err != nil {
			return Request{}, err
		}
		return Request{Kind: KindLatest, Module: m, Path: p}, nil
	}
	i := strings.LastIndex(p, "/@v/")
	if i < 0 {
		return Request{}, errors.New("not a module proxy path: want <module>/@v/..., <module>/@latest or sumdb/<name>/...")
	}
	m, err := unescapeModule(p[:i])
	if err != nil {
		return Request{}, err
	}
	file := p[i+len("/@v/"):]
	if file == "list" {
		return Request{Kind: KindList, Module: m, Path: p}, nil
	}
	var kind Kind
	var ev string
	switch {
	case strings.HasSuffix(file, ".info"):
		kind, ev = KindInfo, strings.TrimSuffix(file, ".info")
	case strings.HasSuffix(file, ".mod"):
		kind, ev = KindMod, strings.TrimSuffix(file, ".mod")
	case strings.HasSuffix(file, ".zip"):
		kind, ev = KindZip, strings.TrimSuffix(file, ".zip")
	default:
		return Request{}, fmt.Errorf("unknown file %q under @v: want list, <version>.info, .mod or .zip", file)
	}
	v, err := module.UnescapeVersion(ev)
	if err != nil || v == "" {
		return Request{}, fmt.Errorf("malformed version %q", ev)
	}
	// .info also answers queries (branch names); .mod and .zip need a
	// canonical version.
	if kind != KindInfo {
		if err := module.Check(m, v); err != nil {
			return Request{}, fmt.Errorf("malformed module version: %v", err)
		}
	}
	return Request{Kind: kind, Module: m, Version: v, Path: p}, nil
}

func unescapeModule(esc string) (string, error) {
	m, err := module.UnescapePath(esc)
	if err != nil {
		return "", fmt.Errorf("malformed module path: %v", err)
	}
	if err := module.CheckPath(m); err != nil {
		return "", fmt.Errorf("malformed module path: %v", err)
	}
	return m, nil
}

// sumdbName is a checksum database name: a host name of at least two
// labels ("sum.golang.org").
var sumdbName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)

// tilePath is a transparency-log tile as cmd/go asks for it:
// tile/H/L/[xNNN/...]NNN[.p/W], with L a level or "data".
var tilePath = regexp.MustCompile(`^tile/[0-9]+/([0-9]+|data)(/x[0-9]{3})*/[0-9]{3}(\.p/[0-9]+)?$`)

func parseSumDB(p, rest string) (Request, error) {
	name, op, ok := strings.Cut(rest, "/")
	if !ok || !sumdbName.MatchString(name) {
		return Request{}, errors.New("malformed checksum database path: want sumdb/<host name>/...")
	}
	switch {
	case op == "supported":
	case strings.HasPrefix(op, "lookup/"):
		mv := strings.TrimPrefix(op, "lookup/")
		i := strings.LastIndex(mv, "@")
		if i <= 0 {
			return Request{}, errors.New("malformed checksum database lookup: want lookup/<module>@<version>")
		}
		if _, err := unescapeModule(mv[:i]); err != nil {
			return Request{}, err
		}
		if _, err := module.UnescapeVersion(mv[i+1:]); err != nil {
			return Request{}, fmt.Errorf("malformed version in lookup: %v", err)
		}
	case op == "latest":
	case strings.HasPrefix(op, "tile/"):
		if !tilePath.MatchString(op) {
			return Request{}, errors.New("malformed checksum database tile path")
		}
	default:
		return Request{}, errors.New("unknown checksum database operation: want supported, latest, lookup/... or tile/...")
	}
	return Request{Kind: KindSumDB, Module: name, Path: p}, nil
}

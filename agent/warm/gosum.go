package warm

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// Sum is one h1 line of a go.sum (or go.work.sum) file.
type Sum struct {
	// Path and Version name the module; Version has no "/go.mod" suffix.
	Path, Version string
	// GoMod is true for a "/go.mod" line (the hash of the module's go.mod
	// file) and false for a line hashing the module zip.
	GoMod bool
	// Hash is the "h1:" hash.
	Hash string
	// File and Line locate the line, for messages.
	File string
	Line int
}

// Where returns "file:line" of the line.
func (s Sum) Where() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// maxParseErrors bounds the errors reported for one file: a binary file
// passed as go.sum should not produce a million lines of errors.
const maxParseErrors = 10

// ParseGoSum parses the go.sum data read from file (named in errors). It
// returns every h1 line; lines with other hash algorithms are skipped, as
// cmd/go ignores algorithms it does not know. CRLF line endings and blank
// lines are accepted. A malformed line is a bad-input error naming
// file:line; all such lines (up to ten) are reported together.
func ParseGoSum(file string, data []byte) ([]Sum, error) {
	var (
		sums []Sum
		errs []error
	)
	lineno := 0
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		lineno++
		line = bytes.TrimSuffix(line, []byte("\r"))
		s, err := parseLine(string(line))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", file, lineno, err))
			if len(errs) == maxParseErrors {
				errs = append(errs, fmt.Errorf("%s: too many errors; is it a go.sum file?", file))
				break
			}
			continue
		}
		if s == nil {
			continue
		}
		s.File, s.Line = file, lineno
		sums = append(sums, *s)
	}
	if len(errs) > 0 {
		errs = append(errs, fmt.Errorf("fix the lines above or regenerate %s with 'go mod tidy'", file))
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("malformed go.sum: %w", errors.Join(errs...)))
	}
	return sums, nil
}

// parseLine parses one line; it returns nil, nil for a line to skip.
func parseLine(line string) (*Sum, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil, nil
	}
	if len(f) != 3 {
		return nil, fmt.Errorf("wrong number of fields: got %d, want 3 (MODULE VERSION HASH)", len(f))
	}
	path, version, hash := f[0], f[1], f[2]
	gomod := false
	if v, ok := strings.CutSuffix(version, "/go.mod"); ok {
		version, gomod = v, true
	}
	if err := module.Check(path, version); err != nil {
		return nil, err
	}
	if module.CanonicalVersion(version) != version {
		return nil, fmt.Errorf("version %q is not canonical (want %q)", version, module.CanonicalVersion(version))
	}
	alg, digest, ok := strings.Cut(hash, ":")
	if !ok || alg == "" {
		return nil, fmt.Errorf("malformed hash %q: want ALG:BASE64, such as h1:...", hash)
	}
	if alg != "h1" {
		return nil, nil
	}
	if raw, err := base64.StdEncoding.DecodeString(digest); err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("malformed h1 hash %q: want 32 bytes in standard base64", hash)
	}
	return &Sum{Path: path, Version: version, GoMod: gomod, Hash: hash}, nil
}

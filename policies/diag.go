package policies

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// Diagnostic is one problem found in a policy file.
type Diagnostic struct {
	// Filename, Line and Column locate the problem; Line and Column are
	// 1-based, and 0 when unknown.
	Filename     string
	Line, Column int
	// Summary is the short class of problem ("Unsupported argument").
	Summary string
	// Detail says what is wrong and how to fix it.
	Detail string
	// Snippet is the offending source line with a caret line under the
	// offending part, or empty; secret values in it are redacted.
	Snippet string
}

// String returns "file:line:col: summary: detail".
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.Filename)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Line, d.Column)
	}
	b.WriteString(": ")
	b.WriteString(d.Summary)
	if d.Detail != "" {
		b.WriteString(": ")
		b.WriteString(d.Detail)
	}
	return b.String()
}

// Error is a policy that failed to parse or validate. It lists every
// problem found, in source order.
type Error struct {
	Diagnostics []Diagnostic
}

// Error returns each diagnostic as "file:line:col: summary: detail"
// followed by its snippet.
func (e *Error) Error() string {
	var b strings.Builder
	for i, d := range e.Diagnostics {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
		if d.Snippet != "" {
			b.WriteByte('\n')
			b.WriteString(strings.TrimRight(d.Snippet, "\n"))
		}
	}
	return b.String()
}

// newError converts the error diagnostics to an *Error marked bad input.
func newError(diags hcl.Diagnostics, filename string, src []byte) error {
	secrets := secretRanges(src, filename)
	var out []Diagnostic
	seen := map[string]bool{}
	for _, hd := range diags {
		if hd.Severity != hcl.DiagError {
			continue
		}
		d := Diagnostic{Filename: filename, Summary: hd.Summary, Detail: hd.Detail}
		if s := hd.Subject; s != nil {
			d.Filename, d.Line, d.Column = s.Filename, s.Start.Line, s.Start.Column
			if s.Filename == filename {
				d.Snippet = snippet(src, *s, secrets)
			}
		}
		if k := d.String(); !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	slices.SortStableFunc(out, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	if len(out) == 0 { // cannot happen: callers pass diagnostics with errors
		out = append(out, Diagnostic{Filename: filename, Summary: "Invalid policy"})
	}
	return errkind.Mark(errkind.BadInput, &Error{Diagnostics: out})
}

// secretAttrs are attributes whose values are never shown, and urlAttrs
// those whose values are hidden when they may carry credentials (userinfo,
// a query or a fragment).
var (
	secretAttrs = map[string]bool{"token": true}
	urlAttrs    = map[string]bool{"url": true}
)

// secretRanges returns the byte ranges of secret values in src, found by
// walking the syntax tree (which hclsyntax returns even for a file with
// syntax errors, as far as it got).
func secretRanges(src []byte, filename string) []hcl.Range {
	f, _ := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if f == nil {
		return nil
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	var out []hcl.Range
	_ = hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		a, ok := n.(*hclsyntax.Attribute)
		if !ok {
			return nil
		}
		r := a.Expr.Range()
		if secretAttrs[a.Name] || (urlAttrs[a.Name] && strings.ContainsAny(string(r.SliceBytes(src)), "@?#")) {
			out = append(out, r)
		}
		return nil
	})
	return out
}

var (
	tokenLineRE = regexp.MustCompile(`(?i)^(\s*token\s*=\s*).*$`)
	userinfoRE  = regexp.MustCompile(`(://[^/@\s"]*:)[^/@\s"]*@`)
)

// snippet renders the source line of rng with carets under it. A line
// that holds a secret value is shown with the value redacted and without
// carets.
func snippet(src []byte, rng hcl.Range, secrets []hcl.Range) string {
	start := min(max(rng.Start.Byte, 0), len(src))
	ls := strings.LastIndexByte(string(src[:start]), '\n') + 1
	le := len(src)
	if i := strings.IndexByte(string(src[start:]), '\n'); i >= 0 {
		le = start + i
	}
	line := strings.TrimRight(string(src[ls:le]), "\r")
	if !utf8.ValidString(line) || len(line) > 200 {
		return ""
	}

	redacted := false
	for _, s := range secrets {
		if s.Start.Byte < ls+len(line) && s.End.Byte > ls {
			a, b := max(s.Start.Byte-ls, 0), min(s.End.Byte-ls, len(line))
			line = line[:a] + `"` + Redacted + `"` + line[b:]
			redacted = true
			break
		}
	}
	if l := tokenLineRE.ReplaceAllString(line, `${1}"`+Redacted+`"`); l != line {
		line, redacted = l, true
	}
	if l := userinfoRE.ReplaceAllString(line, `${1}`+Redacted+`@`); l != line {
		line, redacted = l, true
	}

	num := fmt.Sprint(rng.Start.Line)
	pad := strings.Repeat(" ", len(num))
	out := fmt.Sprintf("  %s | %s\n", num, line)
	if redacted {
		return out
	}
	col := len(string(src[ls:start]))
	if col > len(line) {
		col = len(line)
	}
	var lead strings.Builder
	for _, r := range line[:col] {
		if r == '\t' {
			lead.WriteByte('\t')
		} else {
			lead.WriteByte(' ')
		}
	}
	end := min(max(rng.End.Byte-ls, col), len(line))
	n := max(utf8.RuneCountInString(line[col:end]), 1)
	return out + fmt.Sprintf("  %s | %s%s\n", pad, lead.String(), strings.Repeat("^", n))
}

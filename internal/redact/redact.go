// Package redact is the one redactor: every log line, report, error message
// and renderer that shows a URL, an upstream list or an error holding a URL
// passes it through here, so that all of them hide the same things (user
// info, queries, the agent's capability token and tokens some proxies put in
// their path), and every secret value a run knows (Values: tokens, keys, the
// capability URL) is masked the same way in logs, step output and errors.
// An upstream's answer shown to a user — relayed to cmd/go, quoted in a
// report — is reduced and redacted once, by Answer, and clipped by Clip. A
// divergence between redactors is how a secret reaches a log.
package redact

import (
	"errors"
	"net/url"
	"strings"
)

// Placeholder replaces what is redacted.
const Placeholder = "REDACTED"

// Token reports whether a path segment looks like a random token: only
// letters, digits, '-' and '_', and either 32 or more of them, or 16 or more
// mixing letters and digits. Module path elements with dots, '!' case
// escapes or '@' versions never match, so module paths stay readable.
func Token(s string) bool {
	if len(s) < 16 {
		return false
	}
	var letter, digit bool
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			letter = true
		case r == '-' || r == '_':
		default:
			return false
		}
	}
	return len(s) >= 32 || letter && digit
}

// Path returns the path of a URL with every segment that looks like a
// token replaced by Placeholder, and so is every segment holding a byte that
// a GOPROXY path never has (module paths and versions use letters, digits
// and "-._~!+", and '@' only to start "@v" or "@latest"): user info or a
// list pasted into a path ("user:password@host", "a,b") is no module path.
func Path(p string) string {
	return segments(p, true)
}

// segments redacts the token-like segments of p; strict also redacts
// segments with bytes outside a GOPROXY path's.
func segments(p string, strict bool) string {
	if p == "" {
		return ""
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if Token(s) || strict && !pathSegment(s) {
			segs[i] = Placeholder
		}
	}
	return strings.Join(segs, "/")
}

func pathSegment(s string) bool {
	s = strings.TrimPrefix(s, "@")
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~!+", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// URL returns u fit for a log, report or error: scheme, host and path,
// with user info (name and password: a name can be a token too) shown as
// "REDACTED@", every path segment that looks like a token replaced by
// "REDACTED", and the query and fragment dropped. The path is written as it
// is, not escaped, so module paths stay readable ("!azure", not "%21azure").
// A URL without scheme and host is redacted as a path; an opaque one
// ("user:password@host" without "//") is replaced entirely.
func URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	if u.Opaque != "" {
		return Placeholder
	}
	p := Path(u.Path)
	if u.Scheme == "" && u.Host == "" {
		if u.User != nil {
			return Placeholder
		}
		return p
	}
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteString("://")
	if u.User != nil {
		b.WriteString(Placeholder + "@")
	}
	b.WriteString(u.Host)
	b.WriteString(p)
	return b.String()
}

// URLString is URL for a URL given as a string; input that does not parse
// is replaced entirely.
func URLString(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return Placeholder
	}
	return URL(u)
}

// List redacts a list in cmd/go's GOPROXY syntax (also GONOSUMDB-like
// comma lists): each element that holds "://" is redacted as a URL, one
// with ':' or '@' as a URL without its scheme (user info replaced
// entirely), and any other (direct, off, names, module patterns, scheme-less hosts) has
// its token-like path segments replaced. Separators and spaces stay.
func List(list string) string {
	var b strings.Builder
	for {
		i := strings.IndexAny(list, ",|")
		elem, sep := list, ""
		if i >= 0 {
			elem, sep = list[:i], list[i:i+1]
		}
		t := strings.TrimSpace(elem)
		switch {
		case t == "":
		case strings.Contains(t, "://"):
			elem = strings.Replace(elem, t, URLString(t), 1)
		case strings.ContainsAny(t, ":@"):
			// Scheme-less: a host:port is shown, user info never.
			r := Placeholder
			if u, err := url.Parse("https://" + t); err == nil && u.User == nil {
				r = strings.TrimPrefix(URL(u), "https://")
			}
			elem = strings.Replace(elem, t, r, 1)
		default:
			elem = strings.Replace(elem, t, segments(t, false), 1)
		}
		b.WriteString(elem)
		b.WriteString(sep)
		if i < 0 {
			return b.String()
		}
		list = list[i+1:]
	}
}

// Error returns the *url.Error in err's chain with its URL redacted (the
// http package repeats the whole request URL, token and user info included,
// in its errors), keeping its Op and cause for errors.Is/As; what wrapped it
// is dropped, as it may repeat the URL. Other errors are returned unchanged.
func Error(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	return &url.Error{Op: ue.Op, URL: URLString(ue.URL), Err: ue.Err}
}

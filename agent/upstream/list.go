// Package upstream owns the path from the agent (and warm) to the module
// proxies: the upstream list with cmd/go's GOPROXY semantics, the layered
// HTTP transport (mTLS → retry → user agent → logging), per-origin client
// certificates, timeouts, and the typed errors callers branch on.
package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// Entry is one element of an upstream list.
type Entry struct {
	// URL is the proxy's base URL; nil for direct and off.
	URL *url.URL
	// Direct is cmd/go's "direct": fetch from version control. The agent
	// does not do this itself; it hands "direct" back to cmd/go in the
	// exported GOPROXY (see GoproxySuffix).
	Direct bool
	// Off is cmd/go's "off": no fetching at all.
	Off bool
	// AnyError reports whether the separator after this entry is '|': the
	// next entry is tried after any error, not only after 404 and 410.
	AnyError bool
}

// String returns the entry as it appears in a GOPROXY list, redacted.
func (e Entry) String() string {
	switch {
	case e.Direct:
		return "direct"
	case e.Off:
		return "off"
	}
	return Redact(e.URL)
}

// ParseList parses a list in cmd/go's GOPROXY syntax: URLs, "direct" and
// "off", separated by ',' (fall through on 404/410 only) or '|' (fall
// through on any error). "direct" and "off" may only end the list, since
// only cmd/go itself can act on them.
func ParseList(list string) ([]Entry, error) {
	shown := redactList(list)
	bad := func(format string, args ...any) error {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("upstream list %q: "+format, append([]any{shown}, args...)...))
	}
	list = strings.TrimSpace(list)
	if list == "" {
		return nil, bad("empty: give at least one proxy URL, e.g. https://proxy.golang.org")
	}
	var out []Entry
	for list != "" {
		var elem string
		anyErr := false
		if i := strings.IndexAny(list, ",|"); i >= 0 {
			sep := list[i : i+1]
			elem, anyErr, list = list[:i], sep == "|", list[i+1:]
			if strings.TrimSpace(list) == "" {
				return nil, bad("ends with a separator: remove the trailing %q", sep)
			}
		} else {
			elem, list = list, ""
		}
		elem = strings.TrimSpace(elem)
		switch elem {
		case "":
			return nil, bad("empty element: remove the doubled separator")
		case "direct":
			out = append(out, Entry{Direct: true, AnyError: anyErr})
		case "off":
			out = append(out, Entry{Off: true, AnyError: anyErr})
		default:
			u, err := url.Parse(elem)
			if err != nil {
				return nil, bad("element %d is not a URL: %v", len(out)+1, redactErr(err))
			}
			if u.Scheme != "https" && u.Scheme != "http" {
				// Without a scheme the element is no URL to redact: do not
				// echo it (it could hold credentials).
				return nil, bad("element %d: scheme must be https (or http for loopback), got %q", len(out)+1, u.Scheme)
			}
			if u.Host == "" {
				return nil, bad("element %d: no host: write it as https://HOST[/PATH]", len(out)+1)
			}
			if u.RawQuery != "" || u.Fragment != "" {
				return nil, bad("element %d (%s): a proxy URL takes no query or fragment", len(out)+1, Redact(u))
			}
			u.Path = strings.TrimSuffix(u.Path, "/")
			u.RawPath = ""
			out = append(out, Entry{URL: u, AnyError: anyErr})
		}
	}
	for i, e := range out {
		if (e.Direct || e.Off) && i != len(out)-1 {
			return nil, bad("%q must be the last element: the agent serves the proxies and hands %q to cmd/go", e.String(), e.String())
		}
	}
	return out, nil
}

// Proxies returns the entries that are proxy URLs.
func Proxies(entries []Entry) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.URL != nil {
			out = append(out, e)
		}
	}
	return out
}

// GoproxySuffix returns what follows the agent's URL in the exported
// GOPROXY: ",direct" or "|direct" when the list ends with direct, "" else.
func GoproxySuffix(entries []Entry) string {
	n := len(entries)
	if n < 2 || !entries[n-1].Direct {
		return ""
	}
	if entries[n-2].AnyError {
		return "|direct"
	}
	return ",direct"
}

// Redact returns u without user info, query and fragment, and with every
// path element after the host replaced by "…" when it looks like a secret
// (a long random token).
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host}
	if p := redact.Path(strings.Trim(u.Path, "/")); p != "" {
		r.Path = "/" + p
	}
	if u.User != nil {
		r.User = url.User("REDACTED")
	}
	return r.String()
}

// redactList returns list with user info and secret-looking path elements
// of its URLs redacted, for error messages.
func redactList(list string) string {
	var b strings.Builder
	for list != "" {
		i := strings.IndexAny(list, ",|")
		elem, sep := list, ""
		if i >= 0 {
			elem, sep, list = list[:i], list[i:i+1], list[i+1:]
		} else {
			list = ""
		}
		switch t := strings.TrimSpace(elem); {
		case t == "" || t == "direct" || t == "off":
		default:
			if u, err := url.Parse(t); err == nil && u.Host != "" {
				elem = Redact(u)
			} else {
				elem = "REDACTED"
			}
		}
		b.WriteString(elem)
		b.WriteString(sep)
	}
	return b.String()
}

func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New(ue.Err.Error())
	}
	return err
}

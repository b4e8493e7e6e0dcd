package policies

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// Resolve returns the effective policy every subcommand runs (run, agent,
// warm, diagnose, github, gitlab, policy show): the policy file's, or
// Default when file is empty, with the default route replaced by the
// --upstream list when upstreamSet. An --upstream that was given but is
// empty (an empty GOPROXY_SETUP_UPSTREAM included) is bad input, never the
// public default: a job that meant its private proxy must not send its
// module paths to the public one.
func Resolve(file, upstreamList string, upstreamSet bool) (*Policy, error) {
	p := Default()
	if file != "" {
		var err error
		if p, err = Load(file); err != nil {
			return nil, err
		}
	}
	if upstreamSet {
		if err := p.WithUpstreamList(upstreamList); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// WithUpstreamList replaces the default route's upstreams with list. It is
// the one parser of an upstream list (the --upstream flag and its
// GOPROXY_SETUP_UPSTREAM twin); its rules follow cmd/go's GOPROXY syntax
// where the agent can honour it:
//
//   - Elements are separated by "," (the next one is tried on 404/410
//     only) or "|" (on any error); spaces around them are ignored.
//   - An empty list, an empty element (",,") or a trailing separator is
//     bad input: an empty variable must never mean the public proxy.
//   - A URL is https, or http to a loopback host only. Without a scheme
//     it gets https://, as in cmd/go. A trailing slash is dropped; a query
//     or fragment is refused.
//   - User info ("https://user:password@host") is basic authentication for
//     that upstream: it is kept out of URL, List and Show (the password is
//     a Secret) and sent only to that upstream.
//   - An element that is a name (no dot, no colon) names an upstream the
//     policy declares, or the built-in "public"; a URL equal to a declared
//     upstream's uses that upstream, with its identity, pins and timeouts.
//   - "direct" is accepted only as the last element and only when the
//     policy allows direct fetches (the built-in policy does not); its
//     separator says when cmd/go goes direct (see GoEnv).
//   - "off" and "noproxy" are refused: they would make the agent useless.
//   - An upstream may appear once.
//
// Routes are left as they are. Errors are bad input, never repeat a
// secret, and leave p unchanged.
func (p *Policy) WithUpstreamList(list string) error {
	list = strings.TrimSpace(list)
	if list == "" {
		return upstreamListErrorf("empty (an empty --upstream or GOPROXY_SETUP_UPSTREAM is never the public default): give at least one proxy URL, like https://proxy.golang.org, or unset it for the policy's default route")
	}
	var out []*Upstream
	var added []*Upstream
	fresh := map[*Upstream]bool{} // upstreams this list creates
	for n := 1; list != ""; n++ {
		elem, sep := list, byte(0)
		if i := strings.IndexAny(list, ",|"); i >= 0 {
			elem, sep, list = list[:i], list[i], list[i+1:]
			if strings.TrimSpace(list) == "" {
				return upstreamListErrorf("ends with a separator: remove the trailing %q", string(sep))
			}
		} else {
			list = ""
		}
		elem = strings.TrimSpace(elem)
		if elem == "" {
			return upstreamListErrorf("element %d is empty: remove the doubled separator", n)
		}
		var u *Upstream
		switch {
		case elem == "off":
			return upstreamListErrorf("\"off\" would refuse every module: name at least one upstream, and use a deny rule in the policy to refuse modules")
		case elem == "noproxy":
			return upstreamListErrorf("\"noproxy\" is not supported: name the upstream URLs")
		case elem == "direct":
			if list != "" {
				return upstreamListErrorf("\"direct\" must be the last element: move it to the end")
			}
			if !p.Direct.Allowed {
				return upstreamListErrorf("the policy %s does not allow direct fetches: remove \"direct\", or set direct { allowed = true } in the policy", p.Source)
			}
			continue
		case nameRE.MatchString(elem) && !strings.Contains(elem, "."):
			if u = p.upstream(elem); u == nil && elem == BuiltinUpstream {
				u = builtinUpstream()
				added = append(added, u)
				fresh[u] = true
			}
			if u == nil {
				return upstreamListErrorf("%q is neither a URL nor an upstream the policy %s declares: write a URL like https://proxy.example.com", elem, p.Source)
			}
		default:
			raw := elem
			if !strings.Contains(raw, ":/") && !filepath.IsAbs(raw) {
				raw = "https://" + raw
			}
			user, password, stripped := splitUserinfo(raw)
			norm, err := normalizeURL(stripped)
			if err != nil {
				return upstreamListErrorf("%v", err)
			}
			for _, d := range append(p.Upstreams, added...) {
				if d.URL == norm && d.Username == user && d.Password == Secret(password) {
					u = d
					break
				}
			}
			if u == nil {
				u = newUpstream(p.freeName(added))
				u.URL = norm
				u.Username, u.Password = user, Secret(password)
				added = append(added, u)
				fresh[u] = true
			}
		}
		if containsUpstream(out, u) {
			return upstreamListErrorf("upstream %s appears twice: remove the repetition", u.URL)
		}
		// The separator after an element says when its successor (or
		// cmd/go's direct, see GoEnv) is tried.
		want := u.Fallthrough
		switch sep {
		case ',':
			want = FallthroughNotFound
		case '|':
			want = FallthroughAny
		}
		switch {
		case u.Fallthrough == want:
		case fresh[u]:
			u.Fallthrough = want
		default:
			// A declared upstream keeps its setting for its routes;
			// this list gets a named copy that Show can print.
			c := *u
			c.Name = p.freeName(added)
			c.Fallthrough = want
			u = &c
			added = append(added, u)
			fresh[u] = true
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return upstreamListErrorf("the list names no upstream: give at least one URL, like https://proxy.golang.org")
	}
	p.Upstreams = append(p.Upstreams, added...)
	p.DefaultRoute.Upstreams = out
	return nil
}

// splitUserinfo returns raw's user name and password and raw without them.
// A raw string that is no URL is returned unchanged for normalizeURL to
// refuse (with its own redaction).
func splitUserinfo(raw string) (user, password, stripped string) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return "", "", raw
	}
	user = u.User.Username()
	password, _ = u.User.Password()
	u.User = nil
	return user, password, u.String()
}

func upstreamListErrorf(format string, args ...any) error {
	return errkind.Mark(errkind.BadInput, fmt.Errorf("--upstream: "+format, args...))
}

// freeName returns the first "flag-N" name not taken.
func (p *Policy) freeName(added []*Upstream) string {
	for i := 1; ; i++ {
		n := fmt.Sprintf("flag-%d", i)
		if p.upstream(n) == nil && !containsUpstreamName(added, n) {
			return n
		}
	}
}

func containsUpstreamName(list []*Upstream, name string) bool {
	for _, u := range list {
		if u.Name == name {
			return true
		}
	}
	return false
}

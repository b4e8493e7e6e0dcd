package policies

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// WithUpstreamList replaces the default route's upstreams with list, in
// cmd/go's GOPROXY syntax as the --upstream flag takes it: URLs separated
// by "," (the next one is tried on 404/410 only) or "|" (on any error). An
// element may also name an upstream the policy declares, and an element
// whose URL equals a declared upstream's uses that upstream, with its
// identity, pins and timeouts. A URL without a scheme gets https://, as in
// cmd/go. "direct" is accepted, as the last element, only when the policy
// allows direct fetches (it is what GOPROXY's ",direct" already says);
// "off" is refused. Routes are left as they are.
//
// Callers apply it only when the flag was given: the flag's default would
// otherwise override the policy's own list. Errors are bad input and leave
// p unchanged.
func (p *Policy) WithUpstreamList(list string) error {
	list = strings.TrimSpace(list)
	var out []*Upstream
	var added []*Upstream
	sawDirect := false
	for list != "" {
		elem, sep := list, byte(0)
		if i := strings.IndexAny(list, ",|"); i >= 0 {
			elem, sep, list = list[:i], list[i], list[i+1:]
		} else {
			list = ""
		}
		elem = strings.TrimSpace(elem)
		if elem == "" {
			continue
		}
		if sawDirect {
			return upstreamListErrorf("\"direct\" must be the last element: move it to the end")
		}
		var u *Upstream
		switch {
		case elem == "off":
			return upstreamListErrorf("\"off\" would refuse every module: name at least one upstream, and use a deny rule in the policy to refuse modules")
		case elem == "noproxy":
			return upstreamListErrorf("\"noproxy\" is not supported: name the upstream URLs")
		case elem == "direct":
			if !p.Direct.Allowed {
				return upstreamListErrorf("the policy %s does not allow direct fetches: remove \"direct\", or set direct { allowed = true } in the policy", p.Source)
			}
			sawDirect = true
			continue
		case nameRE.MatchString(elem) && !strings.Contains(elem, "."):
			if u = p.upstream(elem); u == nil && elem == BuiltinUpstream {
				u = builtinUpstream()
				added = append(added, u)
			}
			if u == nil {
				return upstreamListErrorf("%q is neither a URL nor an upstream the policy %s declares: write a URL like https://proxy.example.com", elem, p.Source)
			}
		default:
			raw := elem
			if !strings.Contains(raw, ":/") && !filepath.IsAbs(raw) {
				raw = "https://" + raw
			}
			norm, err := normalizeURL(raw)
			if err != nil {
				return upstreamListErrorf("%v", err)
			}
			for _, d := range append(p.Upstreams, added...) {
				if d.URL == norm {
					u = d
					break
				}
			}
			if u == nil {
				u = newUpstream(p.freeName(added))
				u.URL = norm
				if sep == '|' {
					u.Fallthrough = FallthroughAny
				}
				added = append(added, u)
			}
		}
		if containsUpstream(out, u) {
			return upstreamListErrorf("upstream %s appears twice: remove the repetition", u.URL)
		}
		// The separator after an element says when its successor is tried.
		if sep != 0 {
			want := FallthroughNotFound
			if sep == '|' {
				want = FallthroughAny
			}
			if u.Fallthrough != want {
				// A declared upstream keeps its setting for its routes;
				// this list gets a named copy that Show can print.
				c := *u
				c.Name = p.freeName(added)
				c.Fallthrough = want
				u = &c
				added = append(added, u)
			}
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

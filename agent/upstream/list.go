// Package upstream owns the path from the agent (and warm) to the module
// proxies: the upstream list with cmd/go's GOPROXY semantics, the layered
// HTTP transport (mTLS → retry → user agent → logging), per-origin client
// certificates, timeouts, and the typed errors callers branch on.
//
// It also owns surviving the network (docs/resilience.md). A body of
// immutable content that breaks or stalls is resumed where it broke with a
// validated Range request (ResumeBody). Requests without a body are
// retried on temporary failures with jittered exponential backoff, never
// waiting past the request's deadline. Each upstream has a circuit breaker
// whose rule is: a body broken after its answer began counts only when its
// request was sent after the last failure that counted (the other bodies
// broken by the same network event are one failure with it), and a
// request that got no answer counts on its own once its retries failed
// too; Failures such counts in a row open the circuit (see Breaker). The
// retries, resumes and coalesced failures are counted per upstream
// (Counters, in Health).
package upstream

import (
	"net/url"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
	"github.com/goproxy-setup/goproxy-setup/policies"
)

// Entry is one element of an upstream list.
type Entry struct {
	// URL is the proxy's base URL; nil for direct and off.
	URL *url.URL
	// Direct is cmd/go's "direct": fetch from version control. The agent
	// does not do this itself; it hands "direct" back to cmd/go in the
	// exported GOPROXY (see policies.Policy.GoEnv).
	Direct bool
	// AnyError reports whether the separator after this entry is '|': the
	// next entry is tried after any error, not only after 404 and 410.
	AnyError bool
}

// String returns the entry as it appears in a GOPROXY list, redacted.
func (e Entry) String() string {
	switch {
	case e.Direct:
		return "direct"
	}
	return redact.URL(e.URL)
}

// ParseList reads an upstream list with the one parser,
// policies.Policy.WithUpstreamList (its doc comment lists the rules), under
// a policy that allows direct, and returns its entries: a convenience for
// tools and tests that have no policy. The subcommands go through
// policies.Resolve and RouteEntries instead, so that the policy decides.
func ParseList(list string) ([]Entry, error) {
	p := policies.Default()
	p.Direct.Allowed = true
	last := list[strings.LastIndexAny(list, ",|")+1:]
	direct := strings.TrimSpace(last) == "direct"
	if err := p.WithUpstreamList(list); err != nil {
		return nil, err
	}
	return RouteEntries(p.DefaultRoute, direct), nil
}

// RouteEntries returns a policy route's upstreams as entries, each URL
// carrying the upstream's basic authentication, followed by a direct entry
// when direct is true.
func RouteEntries(r policies.Route, direct bool) []Entry {
	var out []Entry
	for _, u := range r.Upstreams {
		pu, err := url.Parse(u.URL)
		if err != nil {
			continue // policies normalized it: cannot happen
		}
		if u.BasicAuth() {
			pu.User = url.UserPassword(u.Username, u.Password.Reveal())
		}
		out = append(out, Entry{URL: pu, AnyError: u.Fallthrough == policies.FallthroughAny})
	}
	if direct && len(out) > 0 {
		out = append(out, Entry{Direct: true})
	}
	return out
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

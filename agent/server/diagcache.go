package server

import (
	"context"
	"crypto/x509"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/diagnose"
	"github.com/goproxy-setup/goproxy-setup/internal/redact"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// DiagnosisCache runs the diagnostic ladder at most once per upstream per
// TTL, in the background, and hands the agent its verdict for 502/504
// bodies. A request never waits for a ladder: the first failure starts one
// and later failures carry its verdict.
type DiagnosisCache struct {
	id    *tlsauth.Identity
	roots *x509.CertPool
	log   hclog.Logger
	ttl   time.Duration

	mu      sync.Mutex
	entries map[string]*diagEntry
	real    map[string]*url.URL // redacted → real upstream URL
}

type diagEntry struct {
	at      time.Time
	running bool
	brief   string
	layer   string // the ladder's failing layer, "" when it found none
	remedy  string
}

// NewDiagnosisCache returns a cache that diagnoses with id and roots.
// upstreams are the real URLs of the upstreams: failures name upstreams by
// their redacted URL, which is not dialable when the path holds a secret.
func NewDiagnosisCache(id *tlsauth.Identity, roots *x509.CertPool, log hclog.Logger, upstreams ...*url.URL) *DiagnosisCache {
	c := &DiagnosisCache{id: id, roots: roots, log: log, ttl: 30 * time.Second, entries: map[string]*diagEntry{}, real: map[string]*url.URL{}}
	for _, u := range upstreams {
		c.real[redact.URL(u)] = u
	}
	return c
}

// Brief returns the cached verdict for the (redacted) upstream URL and
// starts a ladder when there is none or it is stale. The redacted URL is a
// valid URL for a proxy base without secrets in its path.
func (c *DiagnosisCache) Brief(_ context.Context, upstreamURL string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[upstreamURL]
	if e == nil {
		e = &diagEntry{}
		c.entries[upstreamURL] = e
	}
	if !e.running && time.Since(e.at) > c.ttl {
		e.running = true
		go c.run(upstreamURL, e)
	}
	return e.brief
}

func (c *DiagnosisCache) run(upstreamURL string, e *diagEntry) {
	u, err := url.Parse(upstreamURL)
	if r, ok := c.real[upstreamURL]; ok {
		u, err = r, nil
	}
	brief, layer, remedy := "", "", ""
	if err == nil && !strings.Contains(u.String(), "REDACTED") {
		t := diagnose.Target{URL: u, Roots: c.roots}
		if c.id != nil {
			t.GetClientCertificate = c.id.GetClientCertificate
			t.ClientLeaf = c.id.Certificate().Leaf
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r := diagnose.Run(ctx, []diagnose.Target{t}, diagnose.Options{Logger: c.log.Named("diagnose")})
		cancel()
		if r.Failed() {
			brief = "diagnosis: " + r.Brief(3)
			layer, remedy = r.Verdict.Layer, verdictRemedy(r)
		}
	}
	c.mu.Lock()
	e.brief, e.layer, e.remedy, e.at, e.running = brief, layer, remedy, time.Now(), false
	c.mu.Unlock()
}

// Verdict returns the failing layer and remedy of the last ladder run for
// the (redacted) upstream URL, if it found one.
func (c *DiagnosisCache) Verdict(upstreamURL string) (layer, remedy string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[upstreamURL]; e != nil && e.layer != "" {
		return e.layer, e.remedy, true
	}
	return "", "", false
}

func verdictRemedy(r *diagnose.Report) string {
	for _, ch := range r.Checks {
		if ch.Status == diagnose.StatusFail && ch.Layer == r.Verdict.Layer && ch.Remedy != "" {
			return ch.Remedy
		}
	}
	return "run 'goproxy-setup diagnose' for a layer-by-layer report"
}

// Briefs returns the latest failing verdict of every upstream diagnosed,
// sorted.
func (c *DiagnosisCache) Briefs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.entries {
		if e.brief != "" {
			out = append(out, e.brief)
		}
	}
	sort.Strings(out)
	return out
}

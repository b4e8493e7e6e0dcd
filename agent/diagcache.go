package agent

import (
	"context"
	"crypto/x509"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/diagnose"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
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
}

// NewDiagnosisCache returns a cache that diagnoses with id and roots.
// upstreams are the real URLs of the upstreams: failures name upstreams by
// their redacted URL, which is not dialable when the path holds a secret.
func NewDiagnosisCache(id *tlsauth.Identity, roots *x509.CertPool, log hclog.Logger, upstreams ...*url.URL) *DiagnosisCache {
	c := &DiagnosisCache{id: id, roots: roots, log: log, ttl: 30 * time.Second, entries: map[string]*diagEntry{}, real: map[string]*url.URL{}}
	for _, u := range upstreams {
		c.real[upstream.Redact(u)] = u
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
	brief := ""
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
		}
	}
	c.mu.Lock()
	e.brief, e.at, e.running = brief, time.Now(), false
	c.mu.Unlock()
}

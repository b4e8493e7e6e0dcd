package main

import (
	"context"
	"crypto/x509"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/routes"
	"github.com/goproxy-setup/goproxy-setup/agent/warm"
	"github.com/goproxy-setup/goproxy-setup/policies"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// loadPolicy returns the effective policy of the common flags: --policy's
// (or the built-in defaults) with --upstream in its default route.
func loadPolicy(c *commonFlags) (*policies.Policy, error) {
	return policies.Resolve(c.policy, c.upstream.val, c.upstream.set)
}

// loadIdentity returns the client identity and extra roots named by the
// common flags (nil when not given).
func loadIdentity(c *commonFlags) (*tlsauth.Identity, *x509.CertPool, error) {
	id, err := tlsauth.LoadPair(c.clientCert, c.clientKey)
	if err != nil {
		return nil, nil, err
	}
	var roots *x509.CertPool
	if c.caCert != "" {
		if roots, err = tlsauth.LoadRoots(c.caCert); err != nil {
			return nil, nil, err
		}
	}
	return id, roots, nil
}

// newSource returns the mTLS upstream client with failover, as a warm
// source, for commands that fetch straight from the upstream.
func newSource(ctx context.Context, c *commonFlags, logger hclog.Logger) (warm.Source, func(), error) {
	pol, err := loadPolicy(c)
	if err != nil {
		return nil, nil, err
	}
	id, roots, err := loadIdentity(c)
	if err != nil {
		return nil, nil, err
	}
	f, err := routes.New(pol, id, roots, c.timeout, logger)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

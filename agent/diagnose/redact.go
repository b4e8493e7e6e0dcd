package diagnose

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// Redact returns u fit for a report: scheme, host and path only, with no
// user info, query or fragment, and every path segment that looks like a
// secret (a capability token) replaced by "REDACTED".
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	// Built by hand, not with url.URL.String, so that module paths stay
	// readable ("!azure", not "%21azure").
	p := redact.Path(u.Path)
	if u.Scheme == "" && u.Host == "" {
		return p
	}
	return u.Scheme + "://" + u.Host + p
}

// redactString redacts a URL given as a string; unparsable input is
// replaced entirely.
func redactString(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "REDACTED"
	}
	return Redact(u)
}

// pkixName decodes a DER distinguished name (as servers list acceptable
// client CAs).
type pkixName struct{}

func (pkixName) parse(der []byte) (string, bool) {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 {
		return "", false
	}
	var n pkix.Name
	n.FillFromRDNSequence(&seq)
	if n.CommonName != "" {
		return n.CommonName, true
	}
	return n.String(), true
}

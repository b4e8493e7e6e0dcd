package diagnose

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"strings"
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
	p := redactPath(u.Path)
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

func redactPath(p string) string {
	if p == "" {
		return ""
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if looksSecret(s) {
			segs[i] = "REDACTED"
		}
	}
	return strings.Join(segs, "/")
}

// looksSecret reports whether a path segment looks like a random token:
// long, and mixing letters with digits (module path elements and versions
// rarely do both at that length).
func looksSecret(s string) bool {
	if len(s) >= 32 {
		return true
	}
	if len(s) < 16 {
		return false
	}
	var letters, digits bool
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits = true
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			letters = true
		case r == '-' || r == '_':
		default:
			return false
		}
	}
	return letters && digits
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

package tlsauth

import (
	"net/http"
	"strings"
)

// Refusal is a TLS-terminating front's refusal of the client certificate,
// as its HTTP answer says it: the request never reached the module proxy
// behind it. nginx answers 400 with a page of its own ("No required SSL
// certificate was sent", "The SSL certificate error"), or its internal 496
// and 495 when they are not remapped.
type Refusal struct {
	// NoCert is set when the front received no certificate; otherwise it
	// rejected the one it received (untrusted issuer, expired, revoked).
	NoCert bool
	// Reason is the front's own words, for reports.
	Reason string
}

// The words nginx uses, and its status codes for them.
const (
	noCertReason  = "No required SSL certificate was sent"
	badCertReason = "SSL certificate error"
	badCertPage   = "The SSL certificate error"
	statusBadCert = 495
	statusNoCert  = 496
)

// RefusedBy reports whether an HTTP answer (status and body) is a front's
// refusal of the client certificate, and which. It is the one such check:
// the agent's relay, its classification of failures and the diagnosis's
// client-cert layer all ask it.
func RefusedBy(status int, body string) (Refusal, bool) {
	switch status {
	case statusNoCert:
		return Refusal{NoCert: true, Reason: noCertReason}, true
	case statusBadCert:
		return Refusal{Reason: badCertPage}, true
	case http.StatusBadRequest:
		switch {
		case strings.Contains(body, noCertReason):
			return Refusal{NoCert: true, Reason: noCertReason}, true
		case strings.Contains(body, badCertReason):
			return Refusal{Reason: badCertPage}, true
		}
	}
	return Refusal{}, false
}

package upstream

import (
	"github.com/goproxy-setup/goproxy-setup/internal/redact"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// Answered reports whether the upstream answered with a client-error
// status (4xx, 404 and 410 included): its network, TLS and HTTP layers
// work, and its status and text (see Text) are the answer to relay to
// cmd/go. Such an answer is not a transport failure: it starts no network
// diagnosis and does not fail the job by itself (cmd/go fails the command
// that needed it, printing the text, or recovers, as it does for its
// module-path prefix probes).
//
// A TLS-terminating front's refusal of the client certificate (nginx's 400
// pages "No required SSL certificate was sent" and "The SSL certificate
// error", its internal 495 and 496) is not an answer: the request never
// reached the module proxy, and the ladder's client-cert layer names why.
func (e *Error) Answered() bool {
	if e.Err != nil || e.StatusCode < 400 || e.StatusCode >= 500 {
		return false
	}
	_, refused := tlsauth.RefusedBy(e.StatusCode, e.Body)
	return !refused
}

// Text returns the upstream's answer, made fit to relay: at most a few
// short lines of printable text, with no blank line (cmd/go stops at the
// first) and with what looks like a secret redacted (redact.Answer).
// An HTML page is reduced to its text and a JSON error object to its
// message. Empty when the upstream sent no text.
func (e *Error) Text() string { return redact.Answer(e.Body) }

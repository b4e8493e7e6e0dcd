package server

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/diagnose"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// Classifier returns the agent's error classifier: diagnose.Classify for
// transport errors, plus what only the agent knows — its own certificate's
// validity, and HTTP answers of TLS-terminating fronts such as nginx, which
// report a missing or rejected client certificate as a 400 page rather
// than a TLS alert. For an error status the upstream answered
// (upstream.Error.Answered) the remedy is the hint the proxy relays after
// the upstream's own text, "" when the status implies none.
func Classifier(id *tlsauth.Identity) func(error) (layer, remedy string) {
	return classifier(id, time.Now)
}

// classifier is Classifier with the clock that decides whether id has
// expired.
func classifier(id *tlsauth.Identity, now func() time.Time) func(error) (layer, remedy string) {
	return func(err error) (string, string) {
		// An open circuit fails like the failure that opened it.
		var open *upstream.CircuitOpenError
		if errors.As(err, &open) && open.Last != nil {
			err = open.Last
		}
		var pin *upstream.PinError
		if errors.As(err, &pin) {
			return diagnose.LayerTLS, "the upstream's certificate chain holds none of the policy's spki_pins: if its key was rotated on purpose, add the new pin to the policy; otherwise this is not the expected server"
		}
		var ue *upstream.Error
		if !errors.As(err, &ue) || ue.StatusCode == 0 {
			layer, remedy := diagnose.Classify(err)
			if layer == diagnose.LayerClientCert {
				if r := expiredRemedy(id, now()); r != "" {
					remedy = r
				}
			}
			return layer, remedy
		}
		if ue.Answered() {
			return diagnose.LayerHTTP, answeredHint(ue.StatusCode, id)
		}
		if r, ok := tlsauth.RefusedBy(ue.StatusCode, ue.Body); ok {
			switch {
			case r.NoCert && id == nil:
				return diagnose.LayerClientCert, "the upstream requires a client certificate and none is configured: pass --client-cert/--client-key, or enrol with --ca-url"
			case r.NoCert:
				return diagnose.LayerClientCert, fmt.Sprintf("the upstream requires a client certificate but did not accept ours (%s) as one it asked for: check that its issuer is a CA the upstream trusts, with the full chain", describe(id))
			}
			if r := expiredRemedy(id, now()); r != "" {
				return diagnose.LayerClientCert, r
			}
			return diagnose.LayerClientCert, fmt.Sprintf("the upstream rejected our client certificate (%s): it is not issued by a CA the upstream trusts, or revoked; run 'goproxy-setup diagnose'", describe(id))
		}
		switch {
		case ue.StatusCode >= 500:
			return diagnose.LayerHTTP, fmt.Sprintf("the upstream failed with HTTP %d: check its health and logs, or add a fallback upstream with '|'", ue.StatusCode)
		}
		return diagnose.LayerHTTP, fmt.Sprintf("the upstream answered HTTP %d: run 'goproxy-setup diagnose' for a layer-by-layer report", ue.StatusCode)
	}
}

// answeredHint is the hint relayed after the text of an upstream that
// answered status (4xx), or "" when the status implies none. Only a
// refusal of a request that carried a client certificate may point at the
// identity: without one, a 401 or 403 is the upstream's policy, and its
// own text says why.
func answeredHint(status int, id *tlsauth.Identity) string {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		if id != nil {
			return fmt.Sprintf("we presented the client certificate %s: if this module should be readable, check that this identity may read it", describe(id))
		}
	case http.StatusTooManyRequests:
		return "the upstream limits the request rate: retry later, lower the warm concurrency, or ask its operators for a higher limit"
	case http.StatusProxyAuthRequired:
		return "an HTTP proxy asks for credentials: put them in HTTPS_PROXY's URL, or add the upstream to NO_PROXY"
	}
	return ""
}

// ClassifierWith is Classifier, but where the error alone only says "http"
// (a transport error with no clear layer, such as an HTTP/2 connection that
// could not be established), the last diagnostic ladder's verdict for that
// upstream names the layer.
func ClassifierWith(id *tlsauth.Identity, cache *DiagnosisCache) func(error) (layer, remedy string) {
	quick := Classifier(id)
	return func(err error) (string, string) {
		layer, remedy := quick(err)
		var ue *upstream.Error
		if layer == diagnose.LayerHTTP && cache != nil && errors.As(err, &ue) && ue.StatusCode == 0 {
			if l, r, ok := cache.Verdict(ue.Upstream); ok {
				return l, r
			}
		}
		return layer, remedy
	}
}

// expiredRemedy is the remedy for id's certificate having expired by now,
// or "" while it is valid (or without one).
func expiredRemedy(id *tlsauth.Identity, now time.Time) string {
	if id == nil {
		return ""
	}
	leaf := id.Certificate().Leaf
	if now.After(leaf.NotAfter) {
		return fmt.Sprintf("our client certificate %q expired at %s (%s ago): renew it (enrol again, or enable renewal with --ca-url)", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339), now.Sub(leaf.NotAfter).Round(time.Second))
	}
	return ""
}

func describe(id *tlsauth.Identity) string {
	if id == nil {
		return "none"
	}
	leaf := id.Certificate().Leaf
	return fmt.Sprintf("%q issued by %q", leaf.Subject.CommonName, leaf.Issuer.CommonName)
}

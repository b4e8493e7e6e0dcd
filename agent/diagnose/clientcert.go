package diagnose

import (
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// The client-cert layer: was a certificate requested, sent, accepted.

// clientCertCheck is the client-cert step, judged after the server had its
// say: rejection is "" when the server accepted.
func (tr *targetRun) clientCertCheck(addr string, info *hsInfo, rejection string) Check {
	info.mu.Lock()
	defer info.mu.Unlock()
	now := tr.o.Now()
	leaf := tr.t.ClientLeaf
	var chain [][]byte
	if info.sent != nil {
		chain = info.sent.Certificate
		if leaf == nil {
			leaf = info.sent.Leaf
		}
		if leaf == nil && len(chain) > 0 {
			leaf, _ = x509.ParseCertificate(chain[0])
		}
	}
	if !info.requested {
		if rejection != "" {
			return tr.check(LayerClientCert, StatusFail, addr, "not requested", "the server did not ask for a client certificate but rejected the connection: "+rejection,
				"check the server's TLS client authentication settings", 0)
		}
		return tr.check(LayerClientCert, StatusOK, addr, "not requested", "the server did not ask for a client certificate", "", 0)
	}
	accepted := acceptableNames(info.acceptable)
	acceptDetail := "server accepts any CA"
	if len(accepted) > 0 {
		acceptDetail = "server accepts " + strings.Join(accepted, ", ")
	}
	if info.sent == nil || len(chain) == 0 {
		if rejection != "" {
			return tr.check(LayerClientCert, StatusFail, addr, "not sent", "the server requires a client certificate and none was sent; rejected with "+rejection+"; "+acceptDetail,
				"pass the client certificate and key: --client-cert/--client-key (GOPROXY_SETUP_CLIENT_CERT/GOPROXY_SETUP_CLIENT_KEY), or enrol with 'goproxy-setup enroll'", 0)
		}
		return tr.check(LayerClientCert, StatusOK, addr, "not sent", "the server asked for a client certificate (optional) and none was sent; "+acceptDetail, "", 0)
	}
	var problems []string
	remedy := ""
	ours := "ours"
	if leaf != nil {
		ours = fmt.Sprintf("ours %s (issuer %q)", certName(leaf), leaf.Issuer.CommonName)
		switch {
		case now.After(leaf.NotAfter):
			problems = append(problems, fmt.Sprintf("expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339)))
			remedy = "the client certificate expired: renew it ('goproxy-setup enroll') or pass a current one with --client-cert/--client-key"
		case now.Before(leaf.NotBefore):
			problems = append(problems, fmt.Sprintf("not valid until %s", leaf.NotBefore.UTC().Format(time.RFC3339)))
			remedy = "the client certificate is not valid yet: check this runner's clock (NTP) and the CA's"
		}
	}
	if len(info.acceptable) > 0 && !issuedByAny(chain, info.acceptable) {
		problems = append(problems, "not issued by a CA the server accepts")
		if remedy == "" {
			remedy = fmt.Sprintf("use a client certificate issued by a CA the server accepts (%s), or add our issuer to the server's client CA list (nginx: ssl_client_certificate)", strings.Join(accepted, ", "))
		}
	}
	detail := ours
	if len(problems) > 0 {
		detail += ": " + strings.Join(problems, ", ")
	}
	detail += "; " + acceptDetail
	if rejection != "" {
		if remedy == "" {
			remedy = "the server rejected a certificate that looks valid here: check that the server's client CA list (nginx: ssl_client_certificate, ssl_verify_depth) includes our issuer and that it is not revoked"
		}
		return tr.check(LayerClientCert, StatusFail, addr, "rejected", "rejected with "+rejection+"; "+detail, remedy, 0)
	}
	if len(problems) > 0 {
		return tr.check(LayerClientCert, StatusWarn, addr, "accepted", "the server accepted "+detail, remedy, 0)
	}
	value := "sent"
	if leaf != nil {
		value = "expires in " + roundDays(leaf.NotAfter.Sub(now))
	}
	return tr.check(LayerClientCert, StatusOK, addr, value, "sent "+detail, "", 0)
}

func acceptableNames(dns [][]byte) []string {
	var out []string
	for _, d := range dns {
		var n pkixName
		if s, ok := n.parse(d); ok {
			out = append(out, "\""+s+"\"")
		}
	}
	return out
}

func issuedByAny(chain [][]byte, acceptable [][]byte) bool {
	for _, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			continue
		}
		for _, a := range acceptable {
			if string(c.RawIssuer) == string(a) || string(c.RawSubject) == string(a) {
				return true
			}
		}
	}
	return false
}

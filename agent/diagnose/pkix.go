package diagnose

import (
	"crypto/x509/pkix"
	"encoding/asn1"
)

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

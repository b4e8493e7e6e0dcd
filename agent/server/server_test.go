package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

func TestClassifier(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	leaf := ca.Issue(t, testenv.CertSpec{CommonName: "job", Client: true})
	id, err := tlsauth.LoadPEM(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	nginx := func(msg string) error {
		return &upstream.Error{Upstream: "https://proxy.corp", StatusCode: 400, Body: "<html><center><h1>400 Bad Request</h1></center><center>" + msg + "</center></html>"}
	}
	for _, test := range []struct {
		name       string
		id         *tlsauth.Identity
		err        error
		wantLayer  string
		wantRemedy string
	}{
		{"nginx no cert, none configured", nil, nginx("No required SSL certificate was sent"), "client-cert", "--client-cert"},
		{"nginx no cert, ours not acceptable", id, nginx("No required SSL certificate was sent"), "client-cert", "issuer"},
		{"nginx cert error", id, nginx("The SSL certificate error"), "client-cert", "not issued by a CA the upstream trusts"},
		// The same refusals with nginx's own codes (not remapped to 400):
		// the same layer and remedy, not a generic HTTP one.
		{"nginx 496, none configured", nil, &upstream.Error{StatusCode: 496}, "client-cert", "--client-cert"},
		{"nginx 496, ours not acceptable", id, &upstream.Error{StatusCode: 496}, "client-cert", "issuer"},
		{"nginx 495", id, &upstream.Error{StatusCode: 495}, "client-cert", "not issued by a CA the upstream trusts"},
		{"a 400 that mentions certificates in passing", id, &upstream.Error{StatusCode: 400, Body: "SSL certificate renewal is scheduled"}, "http", ""},
		{"forbidden with a client certificate", id, &upstream.Error{StatusCode: 403}, "http", "may read"},
		{"unauthorized with a client certificate", id, &upstream.Error{StatusCode: 401}, "http", `"job"`},
		{"rate limited", nil, &upstream.Error{StatusCode: 429}, "http", "rate"},
		{"server error", id, &upstream.Error{StatusCode: 503}, "http", "'|'"},
		{"redirect loop", id, &upstream.Error{StatusCode: 310}, "http", "diagnose"},
		{"circuit open after rejected certificates", id, &upstream.CircuitOpenError{Failures: 5, Last: &upstream.Error{Err: fmt.Errorf("remote error: tls: unknown certificate authority")}}, "client-cert", "rejected the client certificate"},
		{"transport", id, &upstream.Error{Err: fmt.Errorf("dial tcp 127.0.0.1:1: connect: connection refused")}, "http", "diagnose"},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			layer, remedy := Classifier(test.id)(test.err)
			if layer != test.wantLayer || !strings.Contains(remedy, test.wantRemedy) {
				t.Errorf("Classifier(%v) = %q, %q; want layer %q and a remedy mentioning %q", test.err, layer, remedy, test.wantLayer, test.wantRemedy)
			}
		})
	}
}

// TestClassifierAnswered: an error status the upstream answered gets a
// hint only where the status implies one: never an identity blame without
// a client certificate, never "diagnose" (the network works).
func TestClassifierAnswered(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	leaf := ca.Issue(t, testenv.CertSpec{CommonName: "job", Client: true})
	id, err := tlsauth.LoadPEM(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, status := range []int{400, 401, 403, 404, 410, 418, 422, 429} {
		for _, withID := range []bool{false, true} {
			var ident *tlsauth.Identity
			if withID {
				ident = id
			}
			e := &upstream.Error{Upstream: "https://proxy.corp", StatusCode: status, Body: "Go module host not permitted"}
			layer, hint := ClassifierWith(ident, nil)(e)
			if layer != "http" {
				t.Errorf("status %d: layer %q, want http", status, layer)
			}
			if strings.Contains(hint, "diagnose") {
				t.Errorf("status %d: hint %q sends the user to a network diagnosis", status, hint)
			}
			blames := strings.Contains(hint, "identity") || strings.Contains(hint, "certificate")
			if want := withID && (status == 401 || status == 403); blames != want {
				t.Errorf("status %d, client certificate %v: hint %q; identity named = %v, want %v", status, withID, hint, blames, want)
			}
		}
	}
}

func TestClassifierExpired(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	leaf := ca.Issue(t, testenv.CertSpec{CommonName: "job", Client: true, NotAfter: time.Now().Add(time.Hour)})
	id, err := tlsauth.LoadPEM(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := id.Certificate().Leaf.NotAfter
	err = &upstream.Error{StatusCode: 400, Body: "The SSL certificate error"}
	// A certificate that expires while the agent runs: the same identity,
	// classified before and after its NotAfter.
	for _, tc := range []struct {
		name    string
		now     time.Time
		expired bool
	}{
		{"still valid", notAfter.Add(-time.Second), false},
		{"expired", notAfter.Add(time.Second), true},
	} {
		_, remedy := classifier(id, func() time.Time { return tc.now })(err)
		if got := strings.Contains(remedy, "expired"); got != tc.expired {
			t.Errorf("%s: remedy %q; says expired = %v, want %v", tc.name, remedy, got, tc.expired)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{
		"127.0.0.1:0": true, "[::1]:8080": true, "localhost:1": true,
		"0.0.0.0:80": false, ":8080": false, "10.0.0.1:80": false, "nonsense": false,
	} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

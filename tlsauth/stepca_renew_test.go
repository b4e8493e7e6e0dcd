package tlsauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// TestRenewUnderLoad runs a client that fetches continuously from an mTLS
// server (requiring client certificates from the step-ca) with a fresh
// handshake per request, while a Renewer renews 10-second certificates
// several times: no request may fail.
func TestRenewUnderLoad(t *testing.T) {
	t.Parallel()
	ca := testenv.StartStepCA(t)
	cert, err := Enroll(context.Background(), EnrollConfig{
		CAURL: ca.URL, Fingerprint: ca.Fingerprint, Lifetime: 10 * time.Second,
		Token: ca.JWKToken(t, "load.example.test"),
	})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	id, err := New(cert)
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	var mu sync.Mutex
	serials := map[string]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		serials[r.TLS.PeerCertificates[0].SerialNumber.String()] = true
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	tr := &http.Transport{TLSClientConfig: ClientConfig(id, roots), DisableKeepAlives: true}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	dir := t.TempDir()
	var logs testenv.SyncBuffer
	r, err := NewRenewer(id, RenewConfig{CAURL: ca.URL, Fingerprint: ca.Fingerprint, Dir: dir, Logger: testLogger(&logs)})
	if err != nil {
		t.Fatalf("NewRenewer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	const wantRenewals = 3
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(40 * time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r.Renewals() < wantRenewals && time.Now().Before(deadline) {
				resp, err := client.Get(srv.URL)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = errors.New(resp.Status)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v, want nil after cancel", err)
	}
	mu.Lock()
	distinct := len(serials)
	mu.Unlock()
	t.Logf("%d requests, %d failed, %d renewals, %d distinct certificates seen by the server", ok.Load(), failed.Load(), r.Renewals(), distinct)
	if n := failed.Load(); n != 0 {
		t.Errorf("%d requests failed (first: %v), want 0", n, firstErr.Load())
	}
	if got := r.Renewals(); got < wantRenewals {
		t.Errorf("renewals = %d within 40s of 10s certificates, want >= %d\nlog:\n%s", got, wantRenewals, logs.String())
	}
	if distinct < wantRenewals {
		t.Errorf("server saw %d distinct client certificates, want >= %d", distinct, wantRenewals)
	}
	// The files follow the renewals.
	fromFiles, err := LoadFiles(dir+"/client.crt", dir+"/client.key")
	if err != nil {
		t.Fatalf("LoadFiles(renewed files): %v", err)
	}
	if got, want := fromFiles.Certificate().Leaf.SerialNumber, id.Certificate().Leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Errorf("file serial = %s, want the current %s", got, want)
	}
}

// TestRenewRetriesWhileCAUnreachable cuts the path to the CA when the
// renewal falls due and restores it before the certificate expires: the
// renewer warns, retries with backoff, and renews.
func TestRenewRetriesWhileCAUnreachable(t *testing.T) {
	t.Parallel()
	ca := testenv.StartStepCA(t)
	cert, err := Enroll(context.Background(), EnrollConfig{
		CAURL: ca.URL, Fingerprint: ca.Fingerprint, Lifetime: 20 * time.Second,
		Token: ca.JWKToken(t, "flaky.example.test"),
	})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	id, err := New(cert)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	gate := newGatedProxy(t, strings.TrimPrefix(ca.URL, "https://"))
	var logs testenv.SyncBuffer
	r, err := NewRenewer(id, RenewConfig{CAURL: "https://" + gate.addr, Fingerprint: ca.Fingerprint, Logger: testLogger(&logs)})
	if err != nil {
		t.Fatalf("NewRenewer: %v", err)
	}
	due := r.NextRenewal()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	// Closed from a little before the renewal falls due until 2.5 s after.
	time.Sleep(time.Until(due.Add(-time.Second)))
	gate.open.Store(false)
	time.Sleep(time.Until(due.Add(2500 * time.Millisecond)))
	if got := r.Renewals(); got != 0 {
		t.Fatalf("renewals while the CA was unreachable = %d, want 0", got)
	}
	gate.open.Store(true)
	for r.Renewals() == 0 && time.Now().Before(cert.Leaf.NotAfter) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if r.Renewals() == 0 {
		t.Fatalf("no renewal before the certificate expired\nlog:\n%s", logs.String())
	}
	if got := id.Certificate().Leaf.SerialNumber; got.Cmp(cert.Leaf.SerialNumber) == 0 {
		t.Errorf("identity still holds the original certificate")
	}
	if l := logs.String(); !strings.Contains(l, "renewal failed; retrying before it expires") || !strings.Contains(l, "expires_in=") {
		t.Errorf("log has no expiry warning:\n%s", l)
	}
}

func TestRenewRefusedAndReenroll(t *testing.T) {
	t.Parallel()
	ca := testenv.StartStepCA(t)
	other := testenv.StartStepCA(t)
	// A certificate from another CA: this CA's mTLS handshake refuses it,
	// as it refuses an expired or foreign one.
	cert, err := Enroll(context.Background(), EnrollConfig{
		CAURL: other.URL, Fingerprint: other.Fingerprint, Token: other.JWKToken(t, "foreign.example.test"),
	})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	id, err := New(cert)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r, err := NewRenewer(id, RenewConfig{CAURL: ca.URL, Fingerprint: ca.Fingerprint})
	if err != nil {
		t.Fatalf("NewRenewer: %v", err)
	}
	err = r.RenewNow(context.Background())
	var ee *EnrollError
	if !errors.As(err, &ee) || ee.Reason != ReasonRenewRefused {
		t.Fatalf("RenewNow with a foreign certificate = %v, want reason ReasonRenewRefused", err)
	}
	r, err = NewRenewer(id, RenewConfig{CAURL: ca.URL, Fingerprint: ca.Fingerprint, Reenroll: func(ctx context.Context) (tls.Certificate, error) {
		return Enroll(ctx, EnrollConfig{CAURL: ca.URL, Fingerprint: ca.Fingerprint, Token: ca.JWKToken(t, "reenrolled.example.test")})
	}})
	if err != nil {
		t.Fatalf("NewRenewer: %v", err)
	}
	if err := r.RenewNow(context.Background()); err != nil {
		t.Fatalf("RenewNow with Reenroll: %v", err)
	}
	if got := id.Certificate().Leaf.Subject.CommonName; got != "reenrolled.example.test" {
		t.Errorf("after re-enrolment CN = %q, want reenrolled.example.test", got)
	}
}

func TestRenewTime(t *testing.T) {
	t.Parallel()
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		received  time.Time
		want      time.Time
	}{
		{"two thirds of the lifetime", base, base.Add(90 * time.Minute), base, base.Add(60 * time.Minute)},
		{"back-dated NotBefore counts from receipt", base.Add(-time.Minute), base.Add(30 * time.Second), base, base.Add(20 * time.Second)},
		{"received before NotBefore", base, base.Add(3 * time.Hour), base.Add(-time.Hour), base.Add(2 * time.Hour)},
		{"already expired", base, base.Add(time.Minute), base.Add(2 * time.Minute), base.Add(2 * time.Minute)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaf := &x509.Certificate{NotBefore: tc.notBefore, NotAfter: tc.notAfter}
			if got := renewTime(leaf, tc.received, 0); !got.Equal(tc.want) {
				t.Errorf("renewTime = %s, want %s", got, tc.want)
			}
		})
	}
}

// gatedProxy forwards TCP to a backend while open is true; while it is
// false it refuses connections by closing them at once.
type gatedProxy struct {
	addr string
	open atomic.Bool
}

func newGatedProxy(t *testing.T, backend string) *gatedProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	g := &gatedProxy{addr: l.Addr().String()}
	g.open.Store(true)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if !g.open.Load() {
				c.Close()
				continue
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(b, c); b.Close() }()
			go func() { defer wg.Done(); io.Copy(c, b); c.Close() }()
		}
	}()
	return g
}

package tlsauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// RenewConfig configures a Renewer. CAURL and Fingerprint are required.
type RenewConfig struct {
	// CAURL and Fingerprint name the step-ca and pin its root, as in
	// EnrollConfig.
	CAURL, Fingerprint string
	// Dir, when set, receives every renewed certificate and its key through
	// WriteFiles (client.crt, client.key 0600), for processes that read the
	// files.
	Dir string
	// Reenroll, when set, obtains a fresh certificate when the CA refuses to
	// renew the current one (for example once it has expired): with OIDC a
	// new CI token is usually available, a one-time token is not.
	Reenroll func(ctx context.Context) (tls.Certificate, error)
	// HTTPClient supplies the timeout and base transport, as in
	// EnrollConfig.
	HTTPClient *http.Client
	// Logger receives renewals (info), retries and the approaching expiry
	// (warn), and an expired certificate (error). hclog.NewNullLogger() when
	// nil.
	Logger hclog.Logger
}

// Renewer keeps an Identity's certificate fresh while a process runs: it
// renews at about two thirds of the certificate's lifetime (minus a jitter
// of up to a twentieth of it, so that many jobs do not hit the CA at once)
// with POST /1.0/renew, authenticated by the current certificate over
// mTLS, and swaps the result in with Identity.Set. A swap never fails or
// stalls a request: handshakes in flight keep the certificate they started
// with, established connections are not touched, and the next handshake
// gets the new one. When the CA is unreachable it retries with jittered
// exponential backoff and warns as the expiry approaches.
//
// The renewal keeps the key (step-ca renews, it does not rekey) and the
// certificate's lifetime. Short-lived certificates, minutes long, are the
// expected case; the lifetime counted is the part after the certificate
// was received, because step-ca back-dates NotBefore (by a minute by
// default), which would otherwise make a one-minute certificate look due
// at once.
type Renewer struct {
	id  *Identity
	cfg RenewConfig
	log hclog.Logger

	mu       sync.Mutex
	ca       *caClient
	received time.Time // when the current certificate was obtained
	renewals int
}

// minRetry and maxRetry bound the backoff between failed renewals.
const (
	minRetry = 500 * time.Millisecond
	maxRetry = time.Minute
)

// NewRenewer returns a Renewer for id. The CA is contacted only by Run
// and RenewNow.
func NewRenewer(id *Identity, cfg RenewConfig) (*Renewer, error) {
	if id == nil || id.Certificate() == nil {
		return nil, errors.New("tlsauth: NewRenewer needs an identity with a certificate")
	}
	if _, err := parseCAURL(cfg.CAURL); err != nil {
		return nil, badInput(err)
	}
	if _, err := normalizeFingerprint(cfg.Fingerprint); err != nil {
		return nil, badInput(err)
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Renewer{id: id, cfg: cfg, log: log, received: time.Now()}, nil
}

// Renewals returns how many renewals (or re-enrolments) succeeded.
func (r *Renewer) Renewals() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.renewals
}

// NextRenewal returns when the current certificate is due for renewal
// (before jitter).
func (r *Renewer) NextRenewal() time.Time {
	r.mu.Lock()
	received := r.received
	r.mu.Unlock()
	return renewTime(r.id.Certificate().Leaf, received, 0)
}

// renewTime is two thirds into the certificate's effective lifetime (from
// the later of NotBefore and received), minus jitter.
func renewTime(leaf *x509.Certificate, received time.Time, jitter time.Duration) time.Time {
	start := leaf.NotBefore
	if received.After(start) {
		start = received
	}
	life := leaf.NotAfter.Sub(start)
	if life < 0 {
		life = 0
	}
	return start.Add(life*2/3 - jitter)
}

// Run renews the certificate until ctx is done, and then returns nil. It
// returns an error only for a problem that retrying cannot fix without
// the operator (no certificate to renew).
func (r *Renewer) Run(ctx context.Context) error {
	retry := time.Duration(0)
	for {
		cur := r.id.Certificate()
		if cur == nil || cur.Leaf == nil {
			return errors.New("tlsauth: renewer: the identity has no certificate")
		}
		r.mu.Lock()
		received := r.received
		r.mu.Unlock()
		life := cur.Leaf.NotAfter.Sub(received)
		var jitter time.Duration
		if j := int64(life / 20); j > 0 {
			jitter = time.Duration(rand.Int64N(j))
		}
		wait := time.Until(renewTime(cur.Leaf, received, jitter))
		if retry > 0 {
			wait = retry
		}
		if wait > 0 {
			r.log.Debug("next certificate renewal", "in", wait.Round(time.Millisecond), "not_after", cur.Leaf.NotAfter.UTC().Format(time.RFC3339))
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		err := r.RenewNow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			retry = 0
			continue
		}
		retry = r.backoff(retry, cur.Leaf)
		left := time.Until(cur.Leaf.NotAfter)
		switch {
		case left <= 0:
			r.log.Error("client certificate expired and renewal failed; requests to the upstream will be refused until it succeeds",
				"expired_ago", (-left).Round(time.Second), "retry_in", retry.Round(time.Millisecond), "error", err)
		default:
			r.log.Warn("client certificate renewal failed; retrying before it expires",
				"expires_in", left.Round(time.Second), "retry_in", retry.Round(time.Millisecond), "error", err)
		}
	}
}

// backoff doubles the previous delay within [minRetry, maxRetry], and
// never beyond a quarter of the time the certificate has left, so that
// several attempts fit before expiry; ±20 % jitter.
func (r *Renewer) backoff(prev time.Duration, leaf *x509.Certificate) time.Duration {
	d := prev * 2
	if d < minRetry {
		d = minRetry
	}
	if left := time.Until(leaf.NotAfter) / 4; left > 0 && d > left {
		d = left
	}
	d = min(max(d, minRetry), maxRetry)
	return d + time.Duration(rand.Int64N(int64(d)*2/5)) - d/5
}

// RenewNow renews the certificate once (or re-enrols when the CA refuses
// and Reenroll is set), swaps it in and writes the files if Dir is set.
func (r *Renewer) RenewNow(ctx context.Context) error {
	cur := r.id.Certificate()
	// A stalled CA must not eat the certificate's remaining lifetime: each
	// attempt gets a quarter of it (2 s to 30 s), then the backoff retries.
	timeout := min(max(time.Until(cur.Leaf.NotAfter)/4, 2*time.Second), 30*time.Second)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r.log.Debug("renewing client certificate", "serial", cur.Leaf.SerialNumber.String(), "timeout", timeout)
	ca, err := r.caClient(ctx)
	if err != nil {
		return err
	}
	cert, err := ca.renew(ctx, cur)
	if err != nil {
		var ee *EnrollError
		if r.cfg.Reenroll == nil || !errors.As(err, &ee) || ee.Reason != ReasonRenewRefused {
			return err
		}
		r.log.Info("the CA refused to renew; enrolling again", "error", err)
		if cert, err = r.cfg.Reenroll(ctx); err != nil {
			return fmt.Errorf("re-enrol after refused renewal: %w", err)
		}
	}
	received := time.Now()
	if err := r.id.Set(cert); err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	r.mu.Lock()
	r.received = received
	r.renewals++
	r.mu.Unlock()
	if r.cfg.Dir != "" {
		if _, _, err := WriteFiles(r.cfg.Dir, cert); err != nil {
			// The new certificate is in use already; the files lag behind.
			r.log.Error("renewed client certificate could not be written", "dir", r.cfg.Dir, "error", err)
		}
	}
	r.log.Info("renewed client certificate", "subject", subjectName(cert.Leaf),
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "serial", cert.Leaf.SerialNumber.String())
	return nil
}

// caClient returns the pinned CA client, dialling it on first use (and
// again after a failure).
func (r *Renewer) caClient(ctx context.Context) (*caClient, error) {
	r.mu.Lock()
	ca := r.ca
	r.mu.Unlock()
	if ca != nil {
		return ca, nil
	}
	ca, err := dialCA(ctx, r.cfg.CAURL, r.cfg.Fingerprint, r.cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.ca = ca
	r.mu.Unlock()
	return ca, nil
}

// renew posts to /1.0/renew over mTLS with cur and returns the renewed
// certificate with cur's key. A fresh connection is used every time, so
// that the handshake presents cur and not a certificate of an earlier
// connection.
func (c *caClient) renew(ctx context.Context, cur *tls.Certificate) (tls.Certificate, error) {
	client := &http.Client{
		Timeout: clientTimeout(c.hc),
		Transport: transportFrom(c.hc, &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    c.roots,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return cur, nil
			},
		}),
	}
	tr := client.Transport.(*http.Transport)
	tr.DisableKeepAlives = true
	// HTTP/1.1: through HTTP/2 a refused client certificate surfaces as
	// "client conn could not be established", without the TLS alert that
	// tells a refusal from an unreachable CA.
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	defer client.CloseIdleConnections()
	var resp signResponse
	status, msg, err := c.post(ctx, client, "/1.0/renew", nil, &resp)
	if err != nil {
		// step-ca verifies the client certificate in the handshake: an
		// expired or foreign one ends in a TLS alert, not an HTTP status.
		// crypto/tls reports a received alert as a *net.OpError with Op
		// "remote error" (tls.AlertError is only used for QUIC).
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "remote error" {
			problem := "the CA refused the client certificate in the TLS handshake"
			if time.Now().After(cur.Leaf.NotAfter) {
				problem = "the CA refused the expired client certificate"
			}
			return tls.Certificate{}, c.errorf(ReasonRenewRefused, err, problem,
				"enrol again: step-ca renews only valid certificates it issued (expired ones only with allowRenewalAfterExpiry)")
		}
		return tls.Certificate{}, err
	}
	if status/100 != 2 {
		return tls.Certificate{}, c.errorf(ReasonRenewRefused, fmt.Errorf("HTTP %d: %s", status, msg),
			"the CA refused to renew the client certificate",
			"it may be expired or revoked, or renewal is disabled for its provisioner (disableRenewal): enrol again")
	}
	chain, err := resp.chain()
	if err != nil {
		return tls.Certificate{}, c.errorf(ReasonOther, err, "the CA's renewal answer holds no certificate", "check the CA's log")
	}
	cert := tls.Certificate{Certificate: chain, PrivateKey: cur.PrivateKey}
	if cert.Leaf, err = x509.ParseCertificate(chain[0]); err != nil {
		return tls.Certificate{}, c.errorf(ReasonOther, err, "the CA returned an unparsable certificate", "check the CA's log")
	}
	if err := c.verifyClientCert(cert.Leaf, chain[1:]); err != nil {
		return tls.Certificate{}, err
	}
	return cert, nil
}

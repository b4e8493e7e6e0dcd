package upstream

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
	"github.com/goproxy-setup/goproxy-setup/internal/version"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// Origin is one upstream origin (scheme://host:port) and the identity it
// may see.
type Origin struct {
	// Host is the URL host (with port when not the default).
	Host string
	// Identity is the client certificate presented to this origin when it
	// asks; nil for none.
	Identity *tlsauth.Identity
	// Roots are the trusted roots; nil means the system roots.
	Roots *x509.CertPool
	// SPKIPins, when not empty, restrict the verified server chain to one
	// holding a public key whose SHA-256 SubjectPublicKeyInfo hash is
	// listed ("sha256/<base64>").
	SPKIPins []string
	// MinTLSVersion raises the minimum TLS version (never below 1.2).
	MinTLSVersion uint16
	// BearerToken, when set, is sent as "Authorization: Bearer" to this
	// origin only (never to a redirect target on another host).
	BearerToken string
	// Timeouts, when set, replace the transport-wide timeouts for this
	// origin.
	Timeouts *Timeouts
}

// tlsConfig returns the origin's TLS configuration.
func (o Origin) tlsConfig() *tls.Config {
	tc := tlsauth.ClientConfig(o.Identity, o.Roots)
	if o.MinTLSVersion > tc.MinVersion {
		tc.MinVersion = o.MinTLSVersion
	}
	if len(o.SPKIPins) > 0 {
		pins := map[string]bool{}
		for _, p := range o.SPKIPins {
			pins[p] = true
		}
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, chain := range cs.VerifiedChains {
				for _, c := range chain {
					sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
					if pins["sha256/"+base64.StdEncoding.EncodeToString(sum[:])] {
						return nil
					}
				}
			}
			return &PinError{Host: o.Host}
		}
	}
	return tc
}

// PinError is a server chain that holds none of the origin's pinned keys.
type PinError struct{ Host string }

func (e *PinError) Error() string {
	return "tls: the server certificate chain of " + e.Host + " holds none of the pinned public keys (spki_pins): the server's key changed or this is not the expected server"
}

// Timeouts bound every phase of an upstream request.
type Timeouts struct {
	Connect        time.Duration // TCP connect
	TLSHandshake   time.Duration
	ResponseHeader time.Duration // request sent → response header
	IdleBody       time.Duration // longest pause between two body reads
}

// DefaultTimeouts returns the timeouts used when none are configured, with
// perFetch as the response-header and idle-body bound.
func DefaultTimeouts(perFetch time.Duration) Timeouts {
	if perFetch <= 0 {
		perFetch = 60 * time.Second
	}
	return Timeouts{Connect: 10 * time.Second, TLSHandshake: 10 * time.Second, ResponseHeader: perFetch, IdleBody: perFetch}
}

// Retry configures retries of idempotent requests.
type Retry struct {
	Attempts   int           // total attempts, ≥ 1
	Backoff    time.Duration // first backoff; doubled each time, with jitter
	MaxBackoff time.Duration
}

// DefaultRetry is three attempts with 200ms, 400ms (±50%) backoff.
var DefaultRetry = Retry{Attempts: 3, Backoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second}

// TransportOptions configures NewTransport.
type TransportOptions struct {
	Origins  []Origin
	Timeouts Timeouts
	Retry    Retry
	Logger   hclog.Logger
	// Base, when set, replaces the per-origin transports' dialer (tests).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewTransport returns the layered upstream RoundTripper:
//
//	logging → user agent → retry → origin router (per-origin mTLS transports)
//
// The router gives every configured origin its own *http.Transport whose TLS
// configuration holds that origin's identity; any other host (a redirect
// target such as a CDN) gets a transport with no client certificate, so the
// certificate is presented only to the origin it belongs to.
func NewTransport(opts TransportOptions) http.RoundTripper {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	r := &router{byHost: map[string]*originTransport{}, timeouts: opts.Timeouts}
	for _, o := range opts.Origins {
		t := opts.Timeouts
		if o.Timeouts != nil {
			t = *o.Timeouts
		}
		r.byHost[strings.ToLower(o.Host)] = &originTransport{
			t:     newHTTPTransport(o.tlsConfig(), t, opts.DialContext),
			token: o.BearerToken,
			idle:  t.IdleBody,
		}
	}
	var roots *x509.CertPool
	if len(opts.Origins) > 0 {
		roots = opts.Origins[0].Roots
	}
	r.other = newHTTPTransport(tlsauth.ClientConfig(nil, roots), opts.Timeouts, opts.DialContext)
	retry := opts.Retry
	if retry.Attempts < 1 {
		retry.Attempts = 1
	}
	var rt http.RoundTripper = r
	rt = &retryTransport{next: rt, retry: retry, log: log}
	rt = &userAgent{next: rt}
	rt = &logging{next: rt, log: log}
	return rt
}

func newHTTPTransport(tc *tls.Config, t Timeouts, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	d := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	if dial == nil {
		dial = d.DialContext
	}
	return &http.Transport{
		// Proxy from the environment: company networks often require it.
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dial,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   t.TLSHandshake,
		ResponseHeaderTimeout: t.ResponseHeader,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   64,
		ExpectContinueTimeout: time.Second,
		// HTTP/2 flow control is the agent's memory bound: a stream
		// buffers what the upstream sent and cmd/go has not read yet,
		// and Go's defaults (4 MiB a stream, 1 GiB a connection) let 64
		// concurrent zips hold hundreds of MiB. 1 MiB a stream and 4 MiB
		// a connection still carry 20–80 MB/s at a 50 ms round trip.
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     1 << 20,
			MaxReceiveBufferPerConnection: 4 << 20,
		},
	}
}

type router struct {
	byHost   map[string]*originTransport
	other    *http.Transport
	timeouts Timeouts
}

// originTransport is one configured origin's transport and credentials.
type originTransport struct {
	t     *http.Transport
	token string
	idle  time.Duration
}

func (r *router) RoundTrip(req *http.Request) (*http.Response, error) {
	t, idle := r.other, r.timeouts.IdleBody
	if o, ok := r.byHost[strings.ToLower(req.URL.Host)]; ok {
		t, idle = o.t, o.idle
		if o.token != "" && req.Header.Get("Authorization") == "" {
			req = req.Clone(req.Context())
			req.Header.Set("Authorization", "Bearer "+o.token)
		}
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if idle > 0 {
		resp.Body = newIdleBody(resp.Body, idle)
	}
	return resp, nil
}

// CloseIdleConnections closes idle connections of every origin.
func (r *router) CloseIdleConnections() {
	for _, o := range r.byHost {
		o.t.CloseIdleConnections()
	}
	r.other.CloseIdleConnections()
}

// ErrIdleBody is returned by a response body that saw no data for longer
// than the idle-body timeout.
var ErrIdleBody = errors.New("upstream stalled: no data received within the idle-body timeout")

// idleBody closes the underlying body when no Read returns data within d.
type idleBody struct {
	rc    io.ReadCloser
	d     time.Duration
	timer *time.Timer
	mu    sync.Mutex
	fired bool
}

func newIdleBody(rc io.ReadCloser, d time.Duration) *idleBody {
	b := &idleBody{rc: rc, d: d}
	b.timer = time.AfterFunc(d, func() {
		b.mu.Lock()
		b.fired = true
		b.mu.Unlock()
		rc.Close()
	})
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	fired := b.fired
	b.mu.Unlock()
	if fired {
		return n, ErrIdleBody
	}
	if n > 0 {
		b.timer.Reset(b.d)
	}
	return n, err
}

// idleTimeoutOf returns the idle-body timeout of a response body from
// this package's transport (as Client.do returns it), or 0.
func idleTimeoutOf(rc io.ReadCloser) time.Duration {
	for {
		switch b := rc.(type) {
		case *idleBody:
			return b.d
		case *cancelBody:
			rc = b.ReadCloser
		default:
			return 0
		}
	}
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	return b.rc.Close()
}

type noRetryKey struct{}

// withoutRetry marks a request context so that the retry layer sends the
// request once (health checks: the breaker wants the plain verdict).
func withoutRetry(ctx context.Context) context.Context {
	return context.WithValue(ctx, noRetryKey{}, true)
}

type retryTransport struct {
	next  http.RoundTripper
	retry Retry
	log   hclog.Logger
}

// RoundTrip retries idempotent requests (GET, HEAD) without a body on
// temporary failures: network errors other than certificate problems, and
// 429, 502, 503, 504. Backoff doubles from Retry.Backoff with ±50% jitter
// (requests that failed together do not come back together); a retry that
// could not start before the request's deadline is not waited for.
func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if (req.Method != http.MethodGet && req.Method != http.MethodHead) || req.Body != nil && req.Body != http.NoBody || req.Context().Value(noRetryKey{}) != nil {
		return t.next.RoundTrip(req)
	}
	backoff := t.retry.Backoff
	for attempt := 1; ; attempt++ {
		resp, err := t.next.RoundTrip(req)
		if attempt >= t.retry.Attempts || !retryable(resp, err) || req.Context().Err() != nil {
			return resp, err
		}
		wait := jittered(backoff)
		if dl, ok := req.Context().Deadline(); ok && time.Until(dl) < wait {
			return resp, err
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if c := countersOf(req.Context()); c != nil {
			c.retries.Add(1)
		}
		t.log.Debug("retrying upstream request", "url", redact.URL(req.URL), "attempt", attempt+1, "wait", wait, "cause", retryCause(resp, err))
		select {
		case <-time.After(wait):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		if backoff *= 2; t.retry.MaxBackoff > 0 && backoff > t.retry.MaxBackoff {
			backoff = t.retry.MaxBackoff
		}
	}
}

// jittered returns a wait drawn uniformly from [b/2, 3b/2]: concurrent
// clients that failed together do not retry together.
func jittered(b time.Duration) time.Duration {
	if b <= 0 {
		return 0
	}
	return b/2 + rand.N(b+1)
}

func retryCause(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

func retryable(resp *http.Response, err error) bool {
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return false
		}
		// Certificate and TLS policy failures do not heal by retrying.
		var (
			certErr    *tls.CertificateVerificationError
			alert      tls.AlertError
			unknownErr x509.UnknownAuthorityError
			hostErr    x509.HostnameError
			invErr     x509.CertificateInvalidError
		)
		var pinErr *PinError
		if errors.As(err, &pinErr) || errors.As(err, &certErr) || errors.As(err, &alert) || errors.As(err, &unknownErr) || errors.As(err, &hostErr) || errors.As(err, &invErr) {
			return false
		}
		if strings.Contains(err.Error(), "remote error: tls:") {
			return false
		}
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return false
		}
		return true
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

type userAgent struct{ next http.RoundTripper }

func (t *userAgent) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", version.UserAgent())
	}
	return t.next.RoundTrip(req)
}

type logging struct {
	next http.RoundTripper
	log  hclog.Logger
}

func (t *logging) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	if t.log.IsDebug() {
		if err != nil {
			t.log.Debug("upstream request failed", "method", req.Method, "url", redact.URL(req.URL), "elapsed", time.Since(start), "error", err)
		} else {
			t.log.Debug("upstream response", "method", req.Method, "url", redact.URL(req.URL), "status", resp.StatusCode, "proto", resp.Proto, "elapsed", time.Since(start))
		}
	}
	return resp, err
}

// sanity check the layering types.
var (
	_ http.RoundTripper = (*router)(nil)
	_ http.RoundTripper = (*retryTransport)(nil)
	_ http.RoundTripper = (*userAgent)(nil)
	_ http.RoundTripper = (*logging)(nil)
	_ fmt.Stringer      = Entry{}
)

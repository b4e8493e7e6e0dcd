// Package diagnose owns the diagnostic ladder: when a fetch from an upstream
// module proxy fails or times out, it checks the path to that upstream layer
// by layer (environment, DNS, TCP, HTTP CONNECT proxy, TLS, client
// certificate, clock, HTTP, checksum database), over IPv4 and IPv6
// separately, and says which layer broke and how to fix it. It also owns the
// report renderers (terminal text, Markdown, JSON, JUnit XML, GitHub
// annotations) and Classify, the cheap one-error classification the agent
// uses before a full ladder has run.
//
// The ladder never hangs: every step has its own deadline and the whole run
// a total one, so diagnosing a timeout cannot itself time out. Reports carry
// only redacted URLs (no user info, no query, no capability token in the
// path) and never a key, token or certificate body.
package diagnose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/http/httpproxy"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// Layer names, in ladder order (docs/architecture.md, docs/diagnose.md).
const (
	LayerEnv        = "env"
	LayerDNS        = "dns"
	LayerTCP        = "tcp"
	LayerProxy      = "proxy"
	LayerTLS        = "tls"
	LayerClientCert = "client-cert"
	LayerClock      = "clock"
	LayerHTTP       = "http"
	LayerSumDB      = "sumdb"
	// LayerTimeout is returned by Classify for a timeout it cannot place
	// on a layer; the ladder itself never uses it.
	LayerTimeout = "timeout"
)

// Status is the outcome of one check.
type Status string

// Check outcomes. Warn never fails a run; Skip marks a check that could not
// run because an earlier layer failed.
const (
	StatusOK   Status = "ok"
	StatusWarn Status = "warn"
	StatusFail Status = "fail"
	StatusSkip Status = "skip"
)

// Target is one upstream to diagnose.
type Target struct {
	// URL is the upstream's base URL (a GOPROXY list entry).
	URL *url.URL
	// GetClientCertificate supplies the client identity when the server
	// asks for one; nil means no identity.
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// ClientLeaf is the client certificate, for expiry and issuer checks
	// before the server is asked; optional (taken from
	// GetClientCertificate's answer when nil).
	ClientLeaf *x509.Certificate
	// Roots verify the server's chain; nil means the system roots.
	Roots *x509.CertPool
	// Module is "path@version" (or only "path") to probe with
	// <module>/@v/list; empty probes the base URL.
	Module string
}

// Options tune a run. The zero value is usable.
type Options struct {
	// Resolver resolves upstream names; nil means the pure Go resolver
	// with the system configuration. Tests point its Dial at a DNS server
	// on loopback.
	Resolver *net.Resolver
	// Dialer opens TCP connections; nil means a zero net.Dialer.
	Dialer *net.Dialer
	// Env reads environment variables; nil means os.Getenv.
	Env func(string) string
	// Proxy picks the HTTP proxy for a request; nil means the
	// HTTPS_PROXY/HTTP_PROXY/NO_PROXY rules (as cmd/go applies them) read
	// through Env.
	Proxy func(*http.Request) (*url.URL, error)
	// Total bounds the whole run; default 20s.
	Total time.Duration
	// Step bounds each step (a lookup, a connect, a handshake, a
	// response); default 5s, never more than Total.
	Step time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives debug lines; default a null logger.
	Logger hclog.Logger
	// SumDB is the checksum database as in GOSUMDB ("sum.golang.org", or
	// "name+key https://url"); empty means GOSUMDB from Env, and no check
	// when that is empty too.
	SumDB string
}

func (o Options) withDefaults() Options {
	if o.Env == nil {
		o.Env = os.Getenv
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{}
	}
	if o.Proxy == nil {
		cfg := httpproxy.Config{
			HTTPProxy:  firstEnv(o.Env, "HTTP_PROXY", "http_proxy"),
			HTTPSProxy: firstEnv(o.Env, "HTTPS_PROXY", "https_proxy"),
			NoProxy:    firstEnv(o.Env, "NO_PROXY", "no_proxy"),
		}
		f := cfg.ProxyFunc()
		o.Proxy = func(r *http.Request) (*url.URL, error) { return f(r.URL) }
	}
	if o.Total <= 0 {
		o.Total = 20 * time.Second
	}
	if o.Step <= 0 {
		o.Step = 5 * time.Second
	}
	if o.Step > o.Total {
		o.Step = o.Total
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return o
}

func firstEnv(env func(string) string, names ...string) string {
	for _, n := range names {
		if v := env(n); v != "" {
			return v
		}
	}
	return ""
}

// Check is the outcome of one step of the ladder.
type Check struct {
	// Target is the redacted upstream URL ("" for environment-wide checks).
	Target string
	// Address is the IP address and port the check ran against, or the
	// proxy's address; "" when the check is not per address.
	Address string
	// Layer is one of the Layer constants.
	Layer string
	// Status is ok, warn, fail or skip.
	Status Status
	// Value is the measured value in short form ("12ms", "TLS 1.3",
	// "+2h0m0s", "404").
	Value string
	// Detail is one line saying what was found.
	Detail string
	// Remedy is one line saying how to fix it; empty when ok.
	Remedy string
	// Duration is how long the check took.
	Duration time.Duration
}

type checkJSON struct {
	Target     string  `json:"target,omitempty"`
	Address    string  `json:"address,omitempty"`
	Layer      string  `json:"layer"`
	Status     Status  `json:"status"`
	Value      string  `json:"value,omitempty"`
	Detail     string  `json:"detail"`
	Remedy     string  `json:"remedy"`
	DurationMS float64 `json:"duration_ms"`
}

// MarshalJSON encodes the check in the Contract's shape (duration_ms).
func (c Check) MarshalJSON() ([]byte, error) {
	return json.Marshal(checkJSON{
		Target: c.Target, Address: c.Address, Layer: c.Layer, Status: c.Status,
		Value: c.Value, Detail: c.Detail, Remedy: c.Remedy, DurationMS: ms(c.Duration),
	})
}

// UnmarshalJSON decodes the Contract's shape.
func (c *Check) UnmarshalJSON(b []byte) error {
	var j checkJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*c = Check{Target: j.Target, Address: j.Address, Layer: j.Layer, Status: j.Status,
		Value: j.Value, Detail: j.Detail, Remedy: j.Remedy,
		Duration: time.Duration(j.DurationMS * float64(time.Millisecond))}
	return nil
}

func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*100) / 100
}

// Verdict is the run's conclusion: the first decisive failure (or, when
// nothing failed, the first warning) in ladder order.
type Verdict struct {
	// Status is fail, warn or ok.
	Status Status `json:"status"`
	// Layer is the failing (or warning) layer; "" when all is ok.
	Layer string `json:"layer"`
	// Target and Address locate it.
	Target  string `json:"target,omitempty"`
	Address string `json:"address,omitempty"`
	// Summary is one line: what failed where.
	Summary string `json:"summary"`
	// Remedy is the fix.
	Remedy string `json:"remedy,omitempty"`
}

// Report is the result of a run.
type Report struct {
	// Started is when the run began.
	Started time.Time `json:"started"`
	// Duration is how long it took.
	Duration time.Duration `json:"-"`
	// Targets are the redacted upstream URLs diagnosed, in order.
	Targets []string `json:"targets"`
	// Checks are in ladder order: environment, then per target and
	// address, then the checksum database.
	Checks []Check `json:"checks"`
	// Verdict is the conclusion.
	Verdict Verdict `json:"verdict"`
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool { return r != nil && r.Verdict.Status == StatusFail }

// Run diagnoses each target and returns the report. It returns within
// opts.Total (plus a little bookkeeping) whatever the network does.
func Run(ctx context.Context, targets []Target, opts Options) *Report {
	o := opts.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, o.Total)
	defer cancel()
	start := o.Now()
	mono := time.Now()
	res := &recordingResolver{base: o.Resolver, dialer: o.Dialer}
	r := &Report{Started: start}
	for _, t := range targets {
		r.Targets = append(r.Targets, redact.URL(t.URL))
	}
	r.Checks = append(r.Checks, envChecks(o, targets)...)

	results := make([]targetResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &targetRun{t: t, o: o, res: res, name: redact.URL(t.URL)}
			results[i] = tr.run(ctx)
		}()
	}
	wg.Wait()
	for _, tr := range results {
		r.Checks = append(r.Checks, tr.checks...)
	}
	if c, ok := sumdbCheck(ctx, o, res, targets, results); ok {
		r.Checks = append(r.Checks, c)
	}
	r.Duration = time.Since(mono)
	r.Verdict = verdictOf(r.Checks)
	o.Logger.Debug("diagnose finished", "verdict", r.Verdict.Layer, "status", r.Verdict.Status, "duration", r.Duration)
	return r
}

// verdictOf picks the first failure in ladder order; failing that the first
// warning outside the environment layer, then the first environment warning.
func verdictOf(checks []Check) Verdict {
	pick := func(c Check) Verdict {
		where := c.Target
		if c.Address != "" {
			if where != "" {
				where += " "
			}
			where += "(" + c.Address + ")"
		}
		s := c.Layer + " " + string(c.Status) + ": " + c.Detail
		if where != "" {
			s = where + ": " + s
		}
		return Verdict{Status: c.Status, Layer: c.Layer, Target: c.Target, Address: c.Address, Summary: s, Remedy: c.Remedy}
	}
	for _, c := range checks {
		if c.Status == StatusFail {
			return pick(c)
		}
	}
	for _, c := range checks {
		if c.Status == StatusWarn && c.Layer != LayerEnv {
			return pick(c)
		}
	}
	for _, c := range checks {
		if c.Status == StatusWarn {
			return pick(c)
		}
	}
	n := 0
	for _, c := range checks {
		if c.Status == StatusOK {
			n++
		}
	}
	return Verdict{Status: StatusOK, Summary: plural(n, "check") + " ok"}
}

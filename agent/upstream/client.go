package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// Error is an upstream request that failed: a transport error or an HTTP
// status that is not success. Its message names the redacted URL.
type Error struct {
	// Upstream is the redacted base URL of the upstream.
	Upstream string
	// URL is the redacted request URL.
	URL string
	// StatusCode is the HTTP status, or 0 for a transport error.
	StatusCode int
	// Body is the start of the response body (at most 1 KiB), as the
	// upstream sent it; Text returns it fit to relay.
	Body string
	// Err is the transport error, or nil.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("GET %s: %v", e.URL, e.Err)
	}
	msg := fmt.Sprintf("GET %s: unexpected status %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Answered() {
		msg = fmt.Sprintf("GET %s: the upstream answered %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	}
	if t := e.Text(); t != "" {
		msg += ": " + strings.ReplaceAll(t, "\n", " / ")
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// NotFound reports an answer of 404 or 410: the module or version does not
// exist on that upstream (not a failure of the upstream).
func (e *Error) NotFound() bool {
	return e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusGone
}

// Temporary reports whether trying again later may succeed.
func (e *Error) Temporary() bool {
	if e.Err != nil {
		return retryable(nil, e.Err)
	}
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests
}

// Timeout reports whether the request timed out.
func (e *Error) Timeout() bool {
	if e.Err == nil {
		return e.StatusCode == http.StatusGatewayTimeout
	}
	if errkind.IsLocalIO(e.Err) {
		// Asked first: a syscall.Errno (EMFILE…) passes for a net.Error.
		return false
	}
	var ne net.Error
	return errors.Is(e.Err, context.DeadlineExceeded) || errors.Is(e.Err, os.ErrDeadlineExceeded) || errors.Is(e.Err, ErrIdleBody) || (errors.As(e.Err, &ne) && ne.Timeout())
}

// IsNotFound reports whether err is a not-found answer from every upstream
// tried.
func IsNotFound(err error) bool {
	var ue *Error
	return errors.As(err, &ue) && ue.NotFound()
}

// Options configures a Client.
type Options struct {
	// Entries is the upstream list (see ParseList).
	Entries []Entry
	// Transport is the layered transport (see NewTransport).
	Transport http.RoundTripper
	// Timeout bounds one fetch up to the response header (0: none beyond
	// the transport's).
	Timeout time.Duration
	// Logger receives debug and warning lines; nil is silent.
	Logger hclog.Logger
	// Breaker configures the per-upstream circuit breaker and its health
	// checks; the zero value disables it.
	Breaker Breaker
}

// Client fetches GOPROXY protocol paths from an upstream list with cmd/go's
// semantics: after a 404 or 410 the next entry is tried; after any other
// failure the next entry is tried only when the separator was '|'.
//
// Every proxy entry has a circuit breaker (see Breaker): an upstream whose
// circuit is open is skipped without a request, which for '|' means going
// straight to the next entry and for ',' failing at once with the error
// that opened the circuit.
type Client struct {
	entries  []Entry
	circuits []*circuit  // parallel to entries; nil for direct and off
	counters []*counters // parallel to entries
	hc       *http.Client
	log      hclog.Logger
	timeout  time.Duration
	close    context.CancelFunc
}

// New returns a Client for opts. Call Close to stop its health checks.
func New(opts Options) *Client {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		entries: opts.Entries,
		hc:      &http.Client{Transport: opts.Transport},
		log:     log,
		timeout: opts.Timeout,
		close:   cancel,
	}
	c.circuits = make([]*circuit, len(c.entries))
	c.counters = make([]*counters, len(c.entries))
	for i, e := range c.entries {
		if e.URL == nil {
			continue
		}
		c.counters[i] = &counters{}
		c.circuits[i] = newCircuit(opts.Breaker, redact.URL(e.URL), log, ctx, c.prober(e), c.counters[i])
	}
	return c
}

// Close stops the health checks of open circuits. The Client still serves
// requests afterwards (open circuits then wait for a trial request).
func (c *Client) Close() error {
	c.close()
	return nil
}

// Health returns the circuit state and the counters of every proxy entry,
// in list order.
func (c *Client) Health() []Health {
	var out []Health
	for _, ci := range c.circuits {
		if ci != nil {
			out = append(out, ci.health())
		}
	}
	return out
}

// prober returns the health check of entry e: a GET of the proxy's root
// without retries. Any answer but 5xx and 429 shows the upstream's
// network, TLS (client certificate included) and HTTP layers work.
func (c *Client) prober(e Entry) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		u := *e.URL
		u.Path = strings.TrimSuffix(u.Path, "/") + "/"
		req, err := http.NewRequestWithContext(withoutRetry(ctx), http.MethodGet, u.String(), nil)
		if err != nil {
			return err
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return fmt.Errorf("health check: status %d", resp.StatusCode)
		}
		return nil
	}
}

// Entries returns the client's upstream list.
func (c *Client) Entries() []Entry { return c.entries }

// Get fetches path (a GOPROXY protocol path relative to the proxy root,
// already escaped, no leading slash, e.g. "golang.org/x/mod/@v/list") and
// returns the first successful response, whose body the caller must close.
// When every entry failed, the error is the last *Error, marked with its
// kind (internal/errkind): Answered when the upstream answered a 4xx
// (404 and 410 included; see Error.Answered), Canceled when ctx was
// cancelled, Local for a limit of this machine (errkind.IsLocalIO: too many
// open files…), else Unreachable (transport errors, timeouts, 5xx).
func (c *Client) Get(ctx context.Context, path string) (*http.Response, error) {
	if strings.HasPrefix(path, "/") {
		path = path[1:]
	}
	var errs []error
	for i, e := range c.entries {
		if e.URL == nil {
			// direct and off end the list: they are cmd/go's to act on.
			break
		}
		ectx := ctx
		if e.AnyError && i+1 < len(c.entries) && c.entries[i+1].URL != nil {
			// '|' with a proxy after it: fail over at once rather than
			// retry an upstream that just failed (the next one is the
			// retry), so that a dead primary costs one connection
			// attempt, not the whole backoff.
			ectx = withoutRetry(ctx)
		}
		resp, err := c.getVia(withCounters(ectx, c.counters[i]), c.circuits[i], e, path)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
		var ue *Error
		if errors.As(err, &ue) && ue.NotFound() {
			continue
		}
		if ctx.Err() != nil || !e.AnyError {
			break
		}
		c.log.Warn("upstream failed, trying the next one ('|' in the list)", "upstream", redact.URL(e.URL), "error", err)
	}
	if len(errs) == 0 {
		return nil, errkind.Mark(errkind.BadInput, errors.New("no proxy URL in the upstream list: add one, e.g. https://proxy.golang.org"))
	}
	last := errs[len(errs)-1]
	var ue *Error
	switch {
	case errors.As(last, &ue) && ue.Answered():
		// 404/410 included: the upstream works and said no.
		return nil, errkind.Mark(errkind.Answered, last)
	case errors.Is(ctx.Err(), context.Canceled):
		return nil, errkind.Mark(errkind.Canceled, last)
	case errkind.IsLocalIO(last):
		// This machine's limits (too many open files…), not the network.
		return nil, errkind.Mark(errkind.Local, last)
	}
	return nil, errkind.Mark(errkind.Unreachable, last)
}

// Open implements agent/warm's Source: it returns the body of a successful
// response.
func (c *Client) Open(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.Get(ctx, path)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// getVia fetches path from e through its circuit breaker. The body of
// immutable content resumes where it broke (ResumeBody).
func (c *Client) getVia(ctx context.Context, ci *circuit, e Entry, path string) (*http.Response, error) {
	if ok, cerr := ci.allow(); !ok {
		u := *e.URL
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + path
		return nil, &Error{Upstream: redact.URL(e.URL), URL: redact.URL(&u), Err: cerr}
	}
	sent := time.Now()
	resp, err := c.get(ctx, e, path)
	switch {
	case err != nil && ctx.Err() != nil:
		ci.release() // the caller went away: no verdict on the upstream
	case breakerFailure(err):
		ci.record(err, time.Time{}) // no answer: counts on its own
	default:
		ci.record(nil, sent)
	}
	if err == nil {
		resp.Body = ResumeBody(ctx, path, resp, func(ctx context.Context, h http.Header) (*http.Response, error) {
			resp, err := c.do(ctx, e, path, h)
			if err != nil {
				return nil, err
			}
			return resp, nil
		})
		// A body that breaks mid-stream (and could not be resumed)
		// counts against the upstream too.
		u := *e.URL
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + path
		resp.Body = &breakerBody{ReadCloser: resp.Body, ci: ci, ctx: ctx, sent: sent, upstream: redact.URL(e.URL), url: redact.URL(&u)}
	}
	return resp, err
}

// breakerBody records a failed body read (not EOF, not the caller's
// cancellation) against the upstream's circuit, once, and returns such a
// failure as an *Error naming the upstream (Timeout reports a stall).
type breakerBody struct {
	io.ReadCloser
	ci       *circuit
	ctx      context.Context
	sent     time.Time
	upstream string
	url      string
	once     sync.Once
}

func (b *breakerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.ctx.Err() == nil {
		ue := &Error{Upstream: b.upstream, URL: b.url, Err: err}
		b.once.Do(func() { b.ci.record(ue, b.sent) })
		return n, ue
	}
	return n, err
}

// get fetches path from e and returns the 200 response, or the failure
// as an *Error.
func (c *Client) get(ctx context.Context, e Entry, path string) (*http.Response, error) {
	resp, err := c.do(ctx, e, path, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		u := *e.URL
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + path
		return nil, &Error{Upstream: redact.URL(e.URL), URL: redact.URL(&u), StatusCode: resp.StatusCode, Body: string(b)}
	}
	return resp, nil
}

// do sends GET path to e with the extra header fields and returns the
// response whatever its status; the transport's failure is an *Error.
// The response header must arrive within the client's timeout.
func (c *Client) do(ctx context.Context, e Entry, path string, header http.Header) (*http.Response, *Error) {
	u := *e.URL
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + path
	u.RawPath = ""
	if strings.Contains(path, "%") {
		// Escaped paths never contain '%'; refuse rather than double-decode.
		return nil, &Error{Upstream: redact.URL(e.URL), URL: redact.URL(&u), Err: errors.New("path contains '%'")}
	}
	reqCtx, cancel := ctx, context.CancelFunc(func() {})
	if c.timeout > 0 {
		reqCtx, cancel = context.WithCancel(ctx)
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, &Error{Upstream: redact.URL(e.URL), URL: redact.URL(&u), Err: err}
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	var timer *time.Timer
	if c.timeout > 0 {
		timer = time.AfterFunc(c.timeout, cancel)
	}
	resp, err := c.hc.Do(req)
	if timer != nil && !timer.Stop() && err != nil {
		err = fmt.Errorf("no response within %s: %w", c.timeout, context.DeadlineExceeded)
	}
	if err != nil {
		cancel()
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the unredacted URL
		}
		return nil, &Error{Upstream: redact.URL(e.URL), URL: redact.URL(&u), Err: err}
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

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
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
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
	// Body is the start of the response body (at most 1 KiB), for
	// not-found and server errors.
	Body string
	// Err is the transport error, or nil.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("GET %s: %v", e.URL, e.Err)
	}
	return fmt.Sprintf("GET %s: unexpected status %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
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
}

// Client fetches GOPROXY protocol paths from an upstream list with cmd/go's
// semantics: after a 404 or 410 the next entry is tried; after any other
// failure the next entry is tried only when the separator was '|'.
type Client struct {
	entries []Entry
	hc      *http.Client
	log     hclog.Logger
	timeout time.Duration
}

// New returns a Client for opts.
func New(opts Options) *Client {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Client{
		entries: opts.Entries,
		hc:      &http.Client{Transport: opts.Transport},
		log:     log,
		timeout: opts.Timeout,
	}
}

// Entries returns the client's upstream list.
func (c *Client) Entries() []Entry { return c.entries }

// Get fetches path (a GOPROXY protocol path relative to the proxy root,
// already escaped, no leading slash, e.g. "golang.org/x/mod/@v/list") and
// returns the first successful response, whose body the caller must close.
// When every entry failed, the error is the last *Error (an errors.Join of
// all of them is available through errors.As on each *Error).
func (c *Client) Get(ctx context.Context, path string) (*http.Response, error) {
	if strings.HasPrefix(path, "/") {
		path = path[1:]
	}
	var errs []error
	for _, e := range c.entries {
		if e.URL == nil {
			// direct and off end the list: they are cmd/go's to act on.
			break
		}
		resp, err := c.get(ctx, e, path)
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
		c.log.Warn("upstream failed, trying the next one ('|' in the list)", "upstream", Redact(e.URL), "error", err)
	}
	if len(errs) == 0 {
		return nil, errkind.Mark(errkind.BadInput, errors.New("no proxy URL in the upstream list: add one, e.g. https://proxy.golang.org"))
	}
	last := errs[len(errs)-1]
	if IsNotFound(last) {
		return nil, last
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

func (c *Client) get(ctx context.Context, e Entry, path string) (*http.Response, error) {
	u := *e.URL
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + path
	u.RawPath = ""
	if strings.Contains(path, "%") {
		// Escaped paths never contain '%'; refuse rather than double-decode.
		return nil, &Error{Upstream: Redact(e.URL), URL: Redact(&u), Err: errors.New("path contains '%'")}
	}
	reqCtx, cancel := ctx, context.CancelFunc(func() {})
	if c.timeout > 0 {
		reqCtx, cancel = context.WithCancel(ctx)
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, &Error{Upstream: Redact(e.URL), URL: Redact(&u), Err: err}
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
		return nil, &Error{Upstream: Redact(e.URL), URL: Redact(&u), Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		cancel()
		return nil, &Error{Upstream: Redact(e.URL), URL: Redact(&u), StatusCode: resp.StatusCode, Body: string(b)}
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

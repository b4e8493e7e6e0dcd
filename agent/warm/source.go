package warm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// Source fetches files of the GOPROXY protocol. Path is relative to the
// proxy's root, has no leading slash and is already escaped, such as
// "github.com/!burnt!sushi/toml/@v/v1.2.0.zip".
//
// An error for a file the upstream does not have satisfies
// errors.Is(err, ErrNotFound) or is an *upstream.Error whose NotFound
// reports true. Any other error of Open or of reading a body is a transport
// failure (retried, and errkind.Unreachable) unless it is marked with
// another errkind or is an *upstream.Error that Answered (a 4xx status).
// A Source that implements fmt.Stringer names the upstream in the Summary;
// the string must not contain secrets.
type Source interface {
	Open(ctx context.Context, path string) (io.ReadCloser, error)
}

// ErrNotFound is the error for a file the upstream does not have (404, 410).
var ErrNotFound = errors.New("not found")

// HTTPSource is a Source that fetches from a plain GOPROXY URL: a running
// agent ("http://127.0.0.1:PORT/TOKEN") or any module proxy. The URL's path
// and user info are treated as secrets (the agent's capability token lives
// there): they never appear in errors or in String.
type HTTPSource struct {
	// BaseURL is the proxy's root URL.
	BaseURL string
	// Client is the HTTP client; nil means a client with one connection
	// pool shared by all fetches and HTTP/2 where the server offers it.
	Client *http.Client
}

var (
	_ Source       = HTTPSource{}
	_ fmt.Stringer = HTTPSource{}
)

// defaultClient is shared so that every HTTPSource without a client reuses
// connections.
var defaultClient = &http.Client{Transport: NewTransport()}

// NewTransport returns an HTTP transport suited to warming: HTTP/2 when the
// server offers it over TLS and enough idle HTTP/1.1 connections per host
// for a concurrent warm.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ForceAttemptHTTP2 = true
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 30 * time.Second
	return t
}

// String returns the redacted base URL (internal/redact: the capability
// token and user info hidden).
func (s HTTPSource) String() string { return redact.URLString(s.BaseURL) }

// Open implements Source. The body of an immutable file resumes where it
// breaks when the proxy allows it (upstream.ResumeBody), so the temporary
// file warm writes it into keeps every byte already received.
func (s HTTPSource) Open(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := s.get(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		// The start of the body: upstream.Error shows it as the agent
		// relays it (bounded, plain, secrets redacted).
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return nil, s.error(path, resp.StatusCode, string(msg), nil)
	}
	return upstream.ResumeBody(ctx, path, resp, func(ctx context.Context, h http.Header) (*http.Response, error) {
		return s.get(ctx, path, h)
	}), nil
}

// get sends GET path with the extra header fields; a transport failure is
// an *upstream.Error.
func (s HTTPSource) get(ctx context.Context, path string, header http.Header) (*http.Response, error) {
	client := s.Client
	if client == nil {
		client = defaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(s.BaseURL, "/")+"/"+path, nil)
	if err != nil {
		// The message of url.Parse errors contains the URL: drop it.
		return nil, s.error(path, 0, "", errors.New("malformed proxy URL"))
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error's message has the URL, with the token
		}
		return nil, s.error(path, 0, "", err)
	}
	return resp, nil
}

// error is a failed request for path: an *upstream.Error, as the agent's
// own upstream client returns, naming the redacted URL.
func (s HTTPSource) error(path string, status int, body string, err error) error {
	return &upstream.Error{Upstream: s.String(), URL: s.String() + "/" + redact.Path(path), StatusCode: status, Body: body, Err: err}
}

// isNotFound reports whether err says the upstream does not have the file.
func isNotFound(err error) bool {
	if errors.Is(err, ErrNotFound) {
		return true
	}
	var ue *upstream.Error
	return errors.As(err, &ue) && ue.NotFound()
}

// Package proxy owns the loopback GOPROXY forwarder: the HTTP handler that
// speaks the plain GOPROXY protocol to cmd/go under a random capability
// path, validates every request, forwards it to the upstream list (mTLS is
// the upstream package's business), streams bodies, answers upstream
// failures with a short diagnosis that cmd/go prints, and keeps statistics.
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// Fetcher fetches GOPROXY protocol paths from the upstreams; the upstream
// package's *Client implements it.
type Fetcher interface {
	Get(ctx context.Context, path string) (*http.Response, error)
}

// Config configures a Handler.
type Config struct {
	// Token is the capability path element: every request must start with
	// "/<Token>/". Use NewToken.
	Token string
	// Upstream serves the forwarded requests.
	Upstream Fetcher
	// Classify names the failing layer of an upstream error and one line of
	// remedy (server.Classifier); nil reports layer "upstream". For an
	// error the upstream answered (upstream.Error.Answered) the remedy is
	// the hint relayed after the upstream's text, and must be empty unless
	// the status implies one (never "run diagnose": the network works).
	Classify func(err error) (layer, remedy string)
	// Diagnose, when set, returns up to a few lines of deeper diagnosis for
	// a failed upstream (the diagnostic ladder's verdict, cached by the
	// caller); it must return quickly.
	Diagnose func(ctx context.Context, upstreamURL string) string
	// Deny reports whether a module is denied by policy and why.
	Deny func(modulePath string) (reason string, denied bool)
	// Stop, when set, is called by POST <token>/.goproxy-setup/stop: the
	// agent may run as another user, so the job stops it through its
	// capability URL rather than a signal.
	Stop func()
	// Diagnoses, when set, returns the latest diagnosis of every failed
	// upstream (GET <token>/.goproxy-setup/diagnoses), for the final report.
	Diagnoses func() []string
	// Logger receives one line per request at debug level and failures at
	// warn level; nil is silent.
	Logger hclog.Logger
}

// Handler is the forwarder. It is safe for concurrent use.
type Handler struct {
	cfg     Config
	log     hclog.Logger
	stats   *statsRecorder
	flights *flightGroup
	start   time.Time
}

// NewToken returns a random capability token: 128 bits, URL-safe base64.
func NewToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate capability token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// New returns a forwarder for cfg.
func New(cfg Config) (*Handler, error) {
	if len(cfg.Token) < 16 {
		return nil, errors.New("proxy: capability token too short (use NewToken)")
	}
	if cfg.Upstream == nil {
		return nil, errors.New("proxy: no upstream")
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Handler{cfg: cfg, log: log, stats: newStatsRecorder(), flights: newFlightGroup(), start: time.Now()}, nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect || !strings.HasPrefix(r.RequestURI, "/") {
		h.stats.reject()
		http.Error(w, "goproxy-setup: absolute-URL and CONNECT requests are not served", http.StatusBadRequest)
		return
	}
	// cmd/go percent-encodes some characters of the path (its '!' case
	// escapes become %21), so work on the decoded path; an encoded '/',
	// '\' or NUL would change the path's structure once decoded: refuse it.
	if raw := strings.ToLower(r.URL.RawPath); strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") || strings.Contains(raw, "%00") || strings.Contains(raw, "%25") {
		h.stats.reject()
		http.Error(w, "goproxy-setup: bad request: encoded '/', '\\', '%' or NUL in the path", http.StatusBadRequest)
		return
	}
	rest, ok := h.authorize(r.URL.Path)
	if !ok {
		h.stats.reject()
		http.NotFound(w, r)
		return
	}
	if adm, ok := strings.CutPrefix(rest, wire.AdminPrefix); ok {
		h.serveAdmin(w, r, adm)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.stats.reject()
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "goproxy-setup: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.RawQuery != "" {
		h.stats.reject()
		http.Error(w, "goproxy-setup: a query string is not part of the GOPROXY protocol", http.StatusBadRequest)
		return
	}
	req, err := ParsePath(rest)
	if err != nil {
		h.stats.reject()
		http.Error(w, "goproxy-setup: bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.Kind != KindSumDB && h.cfg.Deny != nil {
		if reason, denied := h.cfg.Deny(req.Module); denied {
			h.stats.deny()
			http.Error(w, fmt.Sprintf("goproxy-setup: module %s is denied by policy: %s", req.Module, reason), http.StatusForbidden)
			return
		}
	}
	h.forward(w, r, req)
}

// authorize checks the capability token in constant time and returns the
// path after it.
func (h *Handler) authorize(p string) (string, bool) {
	p = strings.TrimPrefix(p, "/")
	tok, rest, _ := strings.Cut(p, "/")
	if subtle.ConstantTimeCompare([]byte(tok), []byte(h.cfg.Token)) != 1 {
		return "", false
	}
	return rest, true
}

func (h *Handler) forward(w http.ResponseWriter, r *http.Request, req Request) {
	start := time.Now()
	if r.Method == http.MethodGet && shareable(req) {
		h.forwardShared(w, r, req, start)
		return
	}
	h.forwardDirect(w, r, req, start)
}

// forwardDirect fetches req for this request alone and streams the body.
func (h *Handler) forwardDirect(w http.ResponseWriter, r *http.Request, req Request, start time.Time) {
	resp, err := h.cfg.Upstream.Get(r.Context(), req.Path)
	if err != nil {
		h.fail(w, r, req, err, start)
		return
	}
	defer resp.Body.Close()
	h.stats.upstreamLatency(time.Since(start))
	h.stream(w, r, req, resp, nil, start)
}

// writeHeader copies the upstream's content headers.
func (h *Handler) writeHeader(w http.ResponseWriter, req Request, hdr http.Header) {
	for _, k := range []string{"Content-Type", "Content-Length", "Cache-Control", "Last-Modified", "ETag"} {
		if v := hdr.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", contentType(req.Kind))
	}
}

// stream answers 200 with prefix followed by the rest of resp's body,
// through one pooled 32 KiB buffer: a body is never held whole.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, req Request, resp *http.Response, prefix []byte, start time.Time) {
	h.writeHeader(w, req, resp.Header)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		h.stats.done(req.Kind, 0, http.StatusOK)
		return
	}
	n, err := int64(0), error(nil)
	if len(prefix) > 0 {
		var m int
		m, err = w.Write(prefix)
		n = int64(m)
	}
	if err == nil {
		bp := bufPool.Get().(*[]byte)
		var m int64
		m, err = io.CopyBuffer(w, resp.Body, *bp)
		bufPool.Put(bp)
		n += m
	}
	if err != nil {
		if r.Context().Err() != nil {
			h.stats.cancelled()
			return
		}
		// Headers are gone: abort the response so cmd/go sees a truncated
		// body (and its own hash check fails) rather than a short success.
		layer := "http"
		if h.cfg.Classify != nil {
			layer, _ = h.cfg.Classify(err)
		}
		h.stats.bodyError(layer)
		h.log.Warn("upstream body failed mid-stream", "path", req.Path, "bytes", n, "error", err)
		panic(http.ErrAbortHandler)
	}
	h.stats.done(req.Kind, n, http.StatusOK)
	h.log.Debug("served", "kind", req.Kind, "module", req.Module, "version", req.Version, "bytes", n, "elapsed", time.Since(start))
}

func contentType(k Kind) string {
	switch k {
	case KindZip:
		return "application/zip"
	case KindInfo, KindLatest:
		return "application/json"
	}
	return "text/plain; charset=utf-8"
}

// fail answers an upstream failure.
//
// An upstream that answered an error status (upstream.Error.Answered: 4xx,
// 404 and 410 included) is relayed with its status and its text, so that
// cmd/go prints what the upstream said exactly as it would talking to the
// upstream itself (and falls through to its next GOPROXY entry on 404 and
// 410); one line naming the upstream, and a hint where the status implies
// one, follow the text. It is not a failure of the agent nor a network
// fault: no diagnosis, and it is counted apart from the failures.
//
// Anything else is a transport failure: 502, or 504 on a timeout, with a
// text body naming the upstream, the layer and the fix.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, req Request, err error, start time.Time) {
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Answered() {
		h.relay(w, req, ue, err)
		return
	}
	if r.Context().Err() != nil {
		// cmd/go went away; nothing to answer.
		h.stats.cancelled()
		return
	}
	layer, remedy := "upstream", "run 'goproxy-setup diagnose' for a layer-by-layer report"
	local := errkind.Of(err) == errkind.Local
	switch {
	case local:
		layer, remedy = "local", "a limit of the agent's machine (open files, memory), not the network nor the upstream: raise it (ulimit -n) or lower the concurrency; see the agent log"
	case h.cfg.Classify != nil:
		layer, remedy = h.cfg.Classify(err)
	}
	status := http.StatusBadGateway
	upstreamName := "the upstream"
	if ue != nil {
		upstreamName = ue.Upstream
		if ue.Timeout() {
			status = http.StatusGatewayTimeout
		}
	}
	h.stats.failed(req.Kind, layer, status)
	h.log.Warn("upstream failed", "path", req.Path, "upstream", upstreamName, "layer", layer, "error", err, "elapsed", time.Since(start))
	// cmd/go shows at most 8 lines and 8*81 bytes of this body under
	// "server response:", so the cause and the fix come first and short.
	cause := err
	if ue != nil && ue.Err != nil {
		cause = ue.Err // without the request URL, which the go command prints itself
	} else if ue != nil {
		msg := fmt.Sprintf("HTTP %d %s", ue.StatusCode, http.StatusText(ue.StatusCode))
		if t := ue.Text(); t != "" {
			msg += ": " + strings.ReplaceAll(t, "\n", " / ")
		}
		cause = errors.New(msg)
	}
	lines := []string{
		fmt.Sprintf("goproxy-setup: %s failure at %s: %s", layer, upstreamName, redact.Clip(oneLine(cause), 160)),
		"fix: " + redact.Clip(remedy, 240),
	}
	if h.cfg.Diagnose != nil && ue != nil && !local {
		if d := strings.TrimSpace(h.cfg.Diagnose(r.Context(), ue.Upstream)); d != "" {
			lines = append(lines, strings.Split(d, "\n")...)
		}
	}
	writeText(w, status, lines, 6)
}

// relay answers what the upstream answered: its status, its text, then a
// line naming the upstream with the hint, if any, that Classify gives for
// the answer.
func (h *Handler) relay(w http.ResponseWriter, req Request, ue *upstream.Error, err error) {
	text := ue.Text() // cleaned once: HTML and JSON reduced, secrets redacted
	if ue.NotFound() {
		h.stats.done(req.Kind, 0, ue.StatusCode)
		h.log.Debug("upstream answered not found", "path", req.Path, "status", ue.StatusCode)
	} else {
		h.stats.answered(ue.StatusCode)
		h.log.Info("upstream answered an error status; relayed to the go command", "path", req.Path, "upstream", ue.Upstream, "status", ue.StatusCode, "text", text)
	}
	var lines []string
	if text != "" {
		lines = strings.Split(text, "\n")
	}
	if !ue.NotFound() {
		hint := ""
		if h.cfg.Classify != nil {
			_, hint = h.cfg.Classify(err)
		}
		l := fmt.Sprintf("goproxy-setup: %s answered %d %s", ue.Upstream, ue.StatusCode, http.StatusText(ue.StatusCode))
		if len(lines) == 0 {
			l += " with no text"
		}
		if hint != "" {
			l += "; " + hint
		}
		lines = append(lines, redact.Clip(l, 320))
	}
	writeText(w, ue.StatusCode, lines, 8)
}

// writeText answers status with a text/plain body of at most maxLines of
// lines, within what cmd/go prints.
func writeText(w http.ResponseWriter, status int, lines []string, maxLines int) {
	var b strings.Builder
	for i, l := range lines {
		if i == maxLines || b.Len()+len(l) > maxBodyBytes {
			break
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	io.WriteString(w, b.String())
}

// maxBodyBytes keeps a failure body within what cmd/go prints.
const maxBodyBytes = 640

// oneLine is the first line of err's text.
func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func (h *Handler) serveAdmin(w http.ResponseWriter, r *http.Request, op string) {
	if op == wire.Stop {
		if r.Method != http.MethodPost || h.cfg.Stop == nil {
			http.Error(w, "goproxy-setup: POST to stop", http.StatusMethodNotAllowed)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		h.cfg.Stop()
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "goproxy-setup: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch op {
	case wire.Health:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	case wire.Stats:
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(h.Stats())
	case wire.Diagnoses:
		var ds []string
		if h.cfg.Diagnoses != nil {
			ds = h.cfg.Diagnoses()
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(ds)
	default:
		http.NotFound(w, r)
	}
}

// Stats returns a snapshot of the forwarder's statistics, with the
// upstreams' health and counters when the Fetcher reports them (a
// Health() []upstream.Health method, as *upstream.Client has).
func (h *Handler) Stats() Stats {
	s := h.stats.snapshot()
	s.Uptime = time.Since(h.start).Round(time.Millisecond).String()
	if hr, ok := h.cfg.Upstream.(interface{ Health() []upstream.Health }); ok {
		s.Upstreams = hr.Health()
	}
	return s
}

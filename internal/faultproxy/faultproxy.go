// Package faultproxy owns a GOPROXY upstream that breaks its answers the
// way company networks do — a body cut after N bytes (the TCP connection
// closed, or the HTTP/2 stream reset), a body that stalls, a connection
// reset before any answer, a 503, an upstream without Range support or
// whose ETag changes between requests — so that the agent, warm and the
// real go command can be tested and benchmarked against each fault. It
// serves a directory in the GOPROXY layout (testenv.WriteProxyDir,
// modgen.WriteProxyDir) with http.ServeContent, which answers Range and
// If-Range requests as real module proxies do.
//
// It is a leaf used by tests and by cmd/goproxy-bench (which cannot import
// the test harnesses under internal/testsupport): it never imports
// testing, listens only where its caller listens (loopback in this
// repository) and logs nothing.
package faultproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what happens to an answer chosen by Options.Match.
type Fault int

// The faults.
const (
	// None serves every answer whole.
	None Fault = iota
	// Cut sends the header and CutAfter bytes of the body, then aborts:
	// over HTTP/1.1 the TCP connection closes, over HTTP/2 the stream is
	// reset (RST_STREAM).
	Cut
	// Stall sends the header and CutAfter bytes, then nothing for
	// StallFor (or until the client goes away), then aborts as Cut.
	Stall
	// Reset aborts before any answer: over HTTP/1.1 a TCP reset (RST),
	// over HTTP/2 a stream reset.
	Reset
	// Unavailable answers 503 Service Unavailable.
	Unavailable
	// Silent answers nothing (not even a header) for StallFor, or until
	// the client goes away, then aborts: an upstream that accepts
	// connections and never answers.
	Silent
)

var faultNames = [...]string{"none", "cut", "stall", "reset", "503", "silent"}

func (f Fault) String() string {
	if int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// ParseFault returns the Fault named s (as String prints it).
func ParseFault(s string) (Fault, error) {
	for i, n := range faultNames {
		if n == s {
			return Fault(i), nil
		}
	}
	return None, fmt.Errorf("unknown fault %q: want one of %s", s, strings.Join(faultNames[:], ", "))
}

// Options configure a Handler.
type Options struct {
	// Fault is injected into the answers Match selects.
	Fault Fault
	// Match selects the files that get the fault, by GOPROXY path
	// (escaped, no leading slash); nil selects every .zip.
	Match func(path string) bool
	// Times is how many requests of each selected file get the fault (its
	// first ones); 0 means 1: the fault happens once per file, and the
	// next request of it (a retry, a resume) is served.
	Times int
	// CutAfter is the body bytes sent before a Cut or a Stall; 0 means half
	// the file. A Range request's body counts from its first byte.
	CutAfter int64
	// StallFor bounds a Stall or a Silent answer; 0 means until the
	// client goes away or the Handler is closed.
	StallFor time.Duration
	// NoRange makes the upstream ignore Range headers (200 and the whole
	// file), as servers without Range support do.
	NoRange bool
	// NoValidators sends neither ETag nor Last-Modified.
	NoValidators bool
	// ChangingETag sends another ETag on every answer of a file, as an
	// upstream whose file changed between two requests would: If-Range
	// then never matches.
	ChangingETag bool
}

// Handler serves a GOPROXY directory with faults. It is safe for
// concurrent use.
type Handler struct {
	root   fs.FS
	opts   Options
	closed chan struct{}
	once   sync.Once

	mu   sync.Mutex
	seen map[string]int // requests by path

	requests, faults, ranges, partial, bytesSent, distinct atomic.Int64
	inflight                                               sync.WaitGroup
}

// New returns a Handler serving root with opts.
func New(root fs.FS, opts Options) *Handler {
	if opts.Match == nil {
		opts.Match = func(p string) bool { return strings.HasSuffix(p, ".zip") }
	}
	if opts.Times <= 0 {
		opts.Times = 1
	}
	return &Handler{root: root, opts: opts, closed: make(chan struct{}), seen: map[string]int{}}
}

// Close ends the stalls in progress.
func (h *Handler) Close() { h.once.Do(func() { close(h.closed) }) }

// Counts are what a Handler saw and did.
type Counts struct {
	// Requests is every request; Faults those that got the fault.
	Requests, Faults int64
	// Ranges counts requests with a Range header, Partial the 206 answers.
	Ranges, Partial int64
	// BytesSent is the body bytes written, faulted answers included.
	BytesSent int64
	// Distinct is the size of every file asked for, once each: BytesSent
	// minus Distinct is what was sent twice (or more), when every file
	// was served whole in the end.
	Distinct int64
}

// Wait waits until no request is being answered (a stall ends when its
// client goes away), so that Counts are final.
func (h *Handler) Wait() { h.inflight.Wait() }

// Counts returns the counts so far.
func (h *Handler) Counts() Counts {
	return Counts{Requests: h.requests.Load(), Faults: h.faults.Load(), Ranges: h.ranges.Load(), Partial: h.partial.Load(), BytesSent: h.bytesSent.Load(), Distinct: h.distinct.Load()}
}

// Requests returns the number of requests of path so far.
func (h *Handler) Requests(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[path]
}

// lastModified is the fixed Last-Modified of every file.
var lastModified = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.inflight.Add(1)
	defer h.inflight.Done()
	h.requests.Add(1)
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	h.mu.Lock()
	h.seen[name]++
	n := h.seen[name]
	h.mu.Unlock()
	if r.Header.Get("Range") != "" {
		h.ranges.Add(1)
	}
	data, err := fs.ReadFile(h.root, name)
	if err != nil || name == "" || name == "." {
		http.Error(w, "not found: "+name, http.StatusNotFound)
		return
	}
	if n == 1 {
		h.distinct.Add(int64(len(data)))
	}
	fault := None
	if h.opts.Fault != None && h.opts.Match(name) && n <= h.opts.Times {
		fault = h.opts.Fault
		h.faults.Add(1)
	}
	switch fault {
	case Reset:
		reset(w)
		return
	case Unavailable:
		http.Error(w, "upstream busy (fault injected)", http.StatusServiceUnavailable)
		return
	case Silent:
		h.wait(r)
		panic(http.ErrAbortHandler)
	}
	if h.opts.NoRange {
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	}
	if !h.opts.NoValidators {
		sum := sha256.Sum256(data)
		etag := hex.EncodeToString(sum[:8])
		if h.opts.ChangingETag {
			etag += fmt.Sprintf("-%d", n)
		}
		w.Header().Set("ETag", `"`+etag+`"`)
	}
	mod := lastModified
	if h.opts.NoValidators {
		mod = time.Time{}
	}
	cw := &countingWriter{ResponseWriter: w, h: h}
	if fault == None {
		http.ServeContent(cw, r, "", mod, strings.NewReader(string(data)))
		return
	}
	cw.limit = h.opts.CutAfter
	if cw.limit <= 0 {
		cw.limit = int64(len(data)) / 2
	}
	cw.cut = true
	http.ServeContent(cw, r, "", mod, strings.NewReader(string(data)))
	if !cw.limited {
		return // a body shorter than the cut: served whole
	}
	http.NewResponseController(w).Flush()
	if fault == Stall {
		h.wait(r)
	}
	// Over HTTP/1.1 the server closes the connection; over HTTP/2 it
	// resets the stream.
	panic(http.ErrAbortHandler)
}

// wait returns after StallFor, when the client goes away, or when the
// Handler is closed.
func (h *Handler) wait(r *http.Request) {
	var after <-chan time.Time
	if h.opts.StallFor > 0 {
		t := time.NewTimer(h.opts.StallFor)
		defer t.Stop()
		after = t.C
	}
	select {
	case <-r.Context().Done():
	case <-h.closed:
	case <-after:
	}
}

// reset aborts a request before any answer: a TCP RST over HTTP/1.1
// (SO_LINGER 0), a stream reset over HTTP/2.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = tc.NetConn() // under TLS: reset the TCP connection itself
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// countingWriter counts body bytes and, when cut is set, swallows what
// goes past limit (the handler then aborts).
type countingWriter struct {
	http.ResponseWriter
	h       *Handler
	cut     bool
	limit   int64
	written int64
	limited bool
}

func (c *countingWriter) WriteHeader(code int) {
	if code == http.StatusPartialContent {
		c.h.partial.Add(1)
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.cut && c.written+int64(len(p)) > c.limit {
		k := c.limit - c.written
		m, err := c.ResponseWriter.Write(p[:k])
		c.written += int64(m)
		c.h.bytesSent.Add(int64(m))
		c.limited = true
		if err != nil {
			return m, err
		}
		// Pretend the rest went: ServeContent stops on a short write
		// anyway, and the handler aborts the answer after it.
		return len(p), io.ErrShortWrite
	}
	m, err := c.ResponseWriter.Write(p)
	c.written += int64(m)
	c.h.bytesSent.Add(int64(m))
	return m, err
}

package upstream

// Resuming broken bodies (docs/resilience.md).
//
// A body of immutable content that breaks (connection closed or reset,
// HTTP/2 stream reset) or stalls (ErrIdleBody; sooner, ResumeStall) after
// some bytes is continued where it broke with "Range: bytes=N-" and
// "If-Range: <the first answer's validator>", so the reader sees one whole
// body and no byte is fetched twice. The continuation is spliced only when it provably
// belongs to the same representation: a 206 whose Content-Range starts at
// N and ends where the first answer's length did, under the same ETag and
// Last-Modified, and that delivers exactly those bytes. Anything else — no
// validator, no Range support, a 200 (what a server answers when If-Range
// no longer matches), a compressed or multipart body, a date validator
// that is not strong (RFC 9110 13.1.5: a Last-Modified less than a minute
// before the answer's Date, since a file rewritten within the same second
// keeps it), a continuation longer or shorter than its Content-Range —
// ends the body with the original error, explained: unvalidated bytes are
// never spliced.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/mod/module"
)

// Bounds of the resumes of one body: in all, and in a row without a byte
// of progress (a continuation that breaks at once).
const (
	maxResumes         = 8
	maxResumesNoGain   = 3
	resumeFirstBackoff = 50 * time.Millisecond
)

// ResumeStall is how long a body that can be resumed waits for its next
// byte before it is continued with a Range request, when that is shorter
// than the idle-body timeout (docs/resilience.md, "Stalls"). A body that
// cannot be resumed keeps the idle-body timeout: ending it sooner would
// only fail it sooner.
//
// 5 s: a continuation is one validated request, so a false alarm costs a
// round trip, while a real stall costs this much of every body it hits;
// but a TCP connection that loses the same segment four times in a row
// is silent for 0.2+0.4+0.8+1.6 = 3 s (Linux's minimum RTO, doubling) and
// still heals by itself, and a server that pauses to fill a buffer or a
// window stays well below a few seconds. The timer runs only while a read
// waits for the upstream, so a slow reader (cmd/go) never trips it.
const ResumeStall = 5 * time.Second

// Immutable reports whether the GOPROXY protocol path (escaped, relative
// to the proxy root) names content that never changes for its URL: the
// .info, .mod and .zip of a canonical version (toolchain zips included)
// and checksum-database tiles. A @v/list, @latest, a query's .info, and
// sumdb's latest and lookup answers change over time.
func Immutable(path string) bool {
	if rest, ok := strings.CutPrefix(path, "sumdb/"); ok {
		_, op, _ := strings.Cut(rest, "/")
		return strings.HasPrefix(op, "tile/")
	}
	mod, file, ok := strings.Cut(path, "/@v/")
	if !ok || mod == "" || strings.Contains(file, "/") {
		return false
	}
	for _, ext := range []string{".zip", ".mod", ".info"} {
		if ev, ok := strings.CutSuffix(file, ext); ok {
			v, err := module.UnescapeVersion(ev)
			return err == nil && v != "" && module.CanonicalVersion(v) == v
		}
	}
	return false
}

// ResumeError is a body that broke and could not be continued: Err is the
// break, Reason why it was not resumed.
type ResumeError struct {
	Err    error
	Reason string
}

func (e *ResumeError) Error() string { return e.Err.Error() + " (not resumed: " + e.Reason + ")" }

// Unwrap returns the break, so the error classifies like it (a stall
// stays a timeout).
func (e *ResumeError) Unwrap() error { return e.Err }

// Counters are the retries and resumes of one upstream since its client
// started: a flaky network shows here even when every fetch succeeded.
type Counters struct {
	// Retries counts requests sent again after a temporary failure
	// (transport error, 429, 502, 503, 504).
	Retries int64 `json:"retries"`
	// Resumes counts broken or stalled bodies continued with a Range
	// request.
	Resumes int64 `json:"resumes"`
	// ResumeFailures counts broken bodies that could not be continued.
	ResumeFailures int64 `json:"resume_failures"`
	// ResumedBytes is the bytes not fetched again thanks to resumes (the
	// offsets the bodies were continued at).
	ResumedBytes int64 `json:"resumed_bytes"`
	// CoalescedFailures counts failures not counted against the circuit
	// because a failure of the same network event already was (see
	// Breaker).
	CoalescedFailures int64 `json:"coalesced_failures"`
}

// Add returns the sum of c and d.
func (c Counters) Add(d Counters) Counters {
	return Counters{Retries: c.Retries + d.Retries, Resumes: c.Resumes + d.Resumes, ResumeFailures: c.ResumeFailures + d.ResumeFailures, ResumedBytes: c.ResumedBytes + d.ResumedBytes, CoalescedFailures: c.CoalescedFailures + d.CoalescedFailures}
}

// Any reports whether anything was counted.
func (c Counters) Any() bool { return c != Counters{} }

// counters is the live form of Counters.
type counters struct {
	retries, resumes, resumeFailures, resumedBytes, coalesced atomic.Int64
}

func (c *counters) snapshot() Counters {
	if c == nil {
		return Counters{}
	}
	return Counters{Retries: c.retries.Load(), Resumes: c.resumes.Load(), ResumeFailures: c.resumeFailures.Load(), ResumedBytes: c.resumedBytes.Load(), CoalescedFailures: c.coalesced.Load()}
}

type countersKey struct{}

// withCounters makes the transport below count its retries in c.
func withCounters(ctx context.Context, c *counters) context.Context {
	return context.WithValue(ctx, countersKey{}, c)
}

func countersOf(ctx context.Context) *counters {
	c, _ := ctx.Value(countersKey{}).(*counters)
	return c
}

// RefetchFunc sends the GET of a resumable body again with the extra
// header fields (Range, If-Range) and returns the response, whatever its
// status; the response's body is the caller's to close.
type RefetchFunc func(ctx context.Context, header http.Header) (*http.Response, error)

// ResumeBody returns resp's body made resumable (see the comment at the
// top of this file) when path is Immutable; otherwise resp.Body. resp must
// be the 200 answer to a plain GET. ctx bounds every continuation; its
// cancellation ends the body as it would any read. Counts go to the
// counters of ctx's client when it has one.
//
// When resp came through this package's transport with an idle-body
// timeout longer than ResumeStall, and the body can be resumed (a
// validator, "Accept-Ranges: bytes"), a read that waits ResumeStall for a
// byte is a stall: the body is continued then rather than after the
// idle-body timeout.
func ResumeBody(ctx context.Context, path string, resp *http.Response, refetch RefetchFunc) io.ReadCloser {
	if !Immutable(path) || resp.StatusCode != http.StatusOK {
		return resp.Body
	}
	b := &resumeBody{ctx: ctx, refetch: refetch, rc: resp.Body, total: resp.ContentLength, cnt: countersOf(ctx)}
	etag := resp.Header.Get("ETag")
	b.etag, b.lastModified = etag, resp.Header.Get("Last-Modified")
	switch {
	case resp.Uncompressed || !identity(resp.Header):
		// Range offsets count the encoded bytes, not the ones read.
		b.why = "the body was compressed in transit"
	case strings.EqualFold(resp.Header.Get("Accept-Ranges"), "none"):
		b.why = "the upstream does not accept Range requests (Accept-Ranges: none)"
	case etag != "" && !strings.HasPrefix(etag, "W/"):
		b.validator = etag
	case b.lastModified != "" && !strongDate(resp.Header):
		b.why = "its Last-Modified is less than a minute before its Date: a file rewritten within that second would keep it, so it cannot validate a continuation"
	case b.lastModified != "":
		// A weak ETag cannot be used with If-Range; a strong date can.
		b.validator = b.lastModified
	default:
		b.why = "the upstream sent no validator (strong ETag or Last-Modified) to check a continuation against"
	}
	if b.validator != "" && strings.EqualFold(resp.Header.Get("Accept-Ranges"), "bytes") {
		if idle := idleTimeoutOf(resp.Body); idle > ResumeStall {
			b.stall = ResumeStall
		}
	}
	return b
}

// StallError is a read of a resumable body that waited longer than its
// stall threshold (ResumeStall) for a byte. It is an ErrIdleBody
// (errors.Is): a stall that could not be resumed classifies as one.
type StallError struct{ After time.Duration }

func (e *StallError) Error() string {
	return fmt.Sprintf("upstream stalled: no data received for %s", e.After)
}

// Is reports ErrIdleBody.
func (e *StallError) Is(target error) bool { return target == ErrIdleBody }

// strongDate reports whether the answer's Last-Modified is a strong
// validator as RFC 9110 13.1.5 lets a client deduce it: at least 60
// seconds before the answer's Date.
func strongDate(h http.Header) bool {
	lm, err1 := http.ParseTime(h.Get("Last-Modified"))
	date, err2 := http.ParseTime(h.Get("Date"))
	return err1 == nil && err2 == nil && !lm.After(date.Add(-60*time.Second))
}

func identity(h http.Header) bool {
	ce := h.Get("Content-Encoding")
	return ce == "" || strings.EqualFold(ce, "identity")
}

type resumeBody struct {
	ctx     context.Context
	refetch RefetchFunc
	cnt     *counters
	rc      io.ReadCloser

	off          int64         // bytes returned to the reader
	total        int64         // the whole length; -1 when unknown
	etag         string        // ETag of the first answer, if any (weak too)
	lastModified string        // Last-Modified of the first answer, if any
	validator    string        // If-Range value; "" when not resumable
	why          string        // why not resumable, when validator is ""
	stall        time.Duration // a read waiting this long is a stall; 0: none
	resumes      int
	noGain       int   // resumes in a row that delivered nothing
	gainFrom     int64 // off at the last resume
}

func (b *resumeBody) Read(p []byte) (int, error) {
	for {
		n, err := b.read(p)
		b.off += int64(n)
		if err == nil || err == io.EOF || b.ctx.Err() != nil {
			return n, err
		}
		var re *ResumeError
		if errors.As(err, &re) {
			// A continuation that broke its promise: never resumed.
			if b.cnt != nil {
				b.cnt.resumeFailures.Add(1)
			}
			return n, err
		}
		if b.total >= 0 && b.off == b.total {
			// Every byte is here; the error is the connection's end.
			return n, io.EOF
		}
		if rerr := b.resume(err); rerr != nil {
			return n, rerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// read reads from the current stream. When the body has a stall
// threshold and the stream has delivered bytes (the first answer, or a
// continuation past its first byte: one that delivers nothing waits the
// idle-body timeout, since a fresh connection that is slow to start is a
// slow upstream, not a broken path), a read that waits longer than it
// closes the stream and returns a *StallError.
func (b *resumeBody) read(p []byte) (int, error) {
	if b.stall <= 0 || (b.resumes > 0 && b.off == b.gainFrom) {
		return b.rc.Read(p)
	}
	rc := b.rc // resume replaces b.rc while the timer may still run
	t := time.AfterFunc(b.stall, func() { rc.Close() })
	n, err := rc.Read(p)
	if !t.Stop() && err != io.EOF {
		// The timer fired, and closed (or is closing) the stream, even
		// when this read got bytes just in time.
		err = &StallError{After: b.stall}
	}
	return n, err
}

// resume replaces b.rc by the continuation of the body at b.off, or
// returns why it cannot (a *ResumeError wrapping cause).
func (b *resumeBody) resume(cause error) error {
	fail := func(why string) error {
		if b.cnt != nil {
			b.cnt.resumeFailures.Add(1)
		}
		return &ResumeError{Err: cause, Reason: why}
	}
	if b.validator == "" {
		return fail(b.why)
	}
	if b.off > b.gainFrom {
		b.noGain = 0
	}
	if b.resumes >= maxResumes || b.noGain >= maxResumesNoGain {
		return fail(fmt.Sprintf("gave up after %d continuations", b.resumes))
	}
	b.rc.Close()
	// Bodies broken by one network event resume apart, not in one burst.
	select {
	case <-time.After(jittered(resumeFirstBackoff << b.noGain)):
	case <-b.ctx.Done():
		return cause
	}
	b.resumes++
	b.noGain++
	b.gainFrom = b.off
	h := http.Header{}
	h.Set("Range", "bytes="+strconv.FormatInt(b.off, 10)+"-")
	h.Set("If-Range", b.validator)
	resp, err := b.refetch(b.ctx, h)
	if err != nil {
		if b.ctx.Err() != nil {
			return cause
		}
		return fail("the Range request failed: " + err.Error())
	}
	if why := b.check(resp); why != "" {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		return fail(why)
	}
	b.rc = &spanBody{rc: resp.Body, remain: b.total - b.off, cause: cause}
	if b.cnt != nil {
		b.cnt.resumes.Add(1)
		b.cnt.resumedBytes.Add(b.off)
	}
	return nil
}

// check returns why resp is not the continuation of the body at b.off,
// or "".
func (b *resumeBody) check(resp *http.Response) string {
	switch {
	case resp.StatusCode == http.StatusOK:
		return "the upstream answered 200 to a Range request: no Range support, or the file changed (If-Range)"
	case resp.StatusCode != http.StatusPartialContent:
		return fmt.Sprintf("the upstream answered %d to a Range request", resp.StatusCode)
	case resp.Uncompressed || !identity(resp.Header):
		return "the continuation was compressed"
	case multipart(resp.Header):
		return "the continuation is multipart/byteranges"
	case b.etag != "" && resp.Header.Get("ETag") != "" && resp.Header.Get("ETag") != b.etag:
		return "the continuation has another ETag"
	case b.lastModified != "" && resp.Header.Get("Last-Modified") != "" && resp.Header.Get("Last-Modified") != b.lastModified:
		return "the continuation has another Last-Modified"
	}
	first, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	switch {
	case err != nil:
		return err.Error()
	case first != b.off:
		return fmt.Sprintf("the continuation starts at byte %d, want %d", first, b.off)
	case b.total >= 0 && total >= 0 && total != b.total:
		return fmt.Sprintf("the continuation is of a %d-byte file, the first answer of a %d-byte one", total, b.total)
	case total >= 0 && last != total-1:
		return fmt.Sprintf("the continuation ends at byte %d of %d", last, total)
	case total < 0 && b.total >= 0 && last != b.total-1:
		return fmt.Sprintf("the continuation ends at byte %d, the first answer at byte %d", last, b.total-1)
	case total < 0 && b.total < 0:
		// Neither answer says where the file ends: a continuation that
		// stops short would pass for the whole file.
		return "neither the first answer nor the continuation gives the file's length"
	case resp.ContentLength >= 0 && resp.ContentLength != last-first+1:
		return "the continuation's Content-Length disagrees with its Content-Range"
	}
	if b.total < 0 && total >= 0 {
		b.total = total
	}
	return ""
}

// parseContentRange parses "bytes FIRST-LAST/TOTAL" (TOTAL may be "*":
// -1).
func parseContentRange(s string) (first, last, total int64, err error) {
	bad := fmt.Errorf("malformed Content-Range %q", s)
	rng, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	span, tot, ok := strings.Cut(rng, "/")
	f, l, ok2 := strings.Cut(span, "-")
	if !ok || !ok2 {
		return 0, 0, 0, bad
	}
	if first, err = strconv.ParseInt(f, 10, 64); err != nil || first < 0 {
		return 0, 0, 0, bad
	}
	if last, err = strconv.ParseInt(l, 10, 64); err != nil || last < first {
		return 0, 0, 0, bad
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= last {
			return 0, 0, 0, bad
		}
	}
	return first, last, total, nil
}

func (b *resumeBody) Close() error { return b.rc.Close() }

func multipart(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return strings.EqualFold(mt, "multipart/byteranges")
}

// spanBody is a continuation held to its Content-Range: exactly remain
// more bytes. It ends early as a break (io.ErrUnexpectedEOF, which may be
// resumed again), and a byte past the span is a *ResumeError: the
// continuation was not what it said.
type spanBody struct {
	rc     io.ReadCloser
	remain int64
	cause  error // the break the continuation resumed
}

func (s *spanBody) Read(p []byte) (int, error) {
	if s.remain <= 0 {
		var one [1]byte
		n, err := s.rc.Read(one[:])
		if n > 0 {
			return 0, &ResumeError{Err: s.cause, Reason: "the continuation is longer than its Content-Range"}
		}
		return 0, err
	}
	if int64(len(p)) > s.remain {
		p = p[:s.remain]
	}
	n, err := s.rc.Read(p)
	s.remain -= int64(n)
	if err == io.EOF && s.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

func (s *spanBody) Close() error { return s.rc.Close() }

var _ io.ReadCloser = (*resumeBody)(nil)

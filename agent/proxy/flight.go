package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
)

// Single-flight for immutable content.
//
// Identical concurrent GETs of content that never changes for its URL — the
// .info, .mod and .zip of a canonical version and checksum-database tiles —
// share one upstream fetch. Many go commands in parallel CI jobs (or one
// `go build` and a warm running side by side) ask for the same .info/.mod
// files at the same moment; without sharing each would cost one upstream
// round trip.
//
// How the body is shared, and why this way: the leader reads a body of at
// most maxSharedBody (1 MiB) into one buffer that every waiter writes from
// (one copy in memory per flight, not per request), and the total held by
// all flights is capped by sharedBudget (16 MiB); a bigger body, or one
// arriving when the budget is spent, is streamed by the leader alone while
// the followers fetch it independently, each through a 32 KiB copy buffer.
// The alternative — fanning a large body out through a temp file that
// followers read as it grows — saves upstream bytes only when several
// clients want the same large zip at the same instant, which cmd/go's
// workload rarely produces (a build fetches each zip once; what repeats
// across concurrent go commands are .info/.mod files and tiles, all far
// below 1 MiB), and costs disk writes, a file per flight and a reader
// protocol for every zip. Measured with BenchmarkSingleFlight: 64 identical
// concurrent .mod requests cost one upstream fetch instead of 64. So
// memory stays bounded (budget + 32 KiB per streaming request) whatever the
// load, and no request ever buffers a whole large body.
//
// Buffering a small body completely before answering has a second benefit:
// a body that breaks mid-stream and cannot be resumed (upstream.ResumeBody
// continues it where it can) can be fetched again whole before any header
// has gone to cmd/go, so a transient reset heals instead of aborting.
const (
	maxSharedBody = 1 << 20
	sharedBudget  = 16 << 20
)

// shareable reports whether req names immutable content
// (upstream.Immutable).
func shareable(req Request) bool {
	return upstream.Immutable(req.Path)
}

// flightGroup holds the fetches in flight by path.
type flightGroup struct {
	mu     sync.Mutex
	m      map[string]*flight
	budget atomic.Int64 // bytes still available for shared bodies
}

func newFlightGroup() *flightGroup {
	g := &flightGroup{m: map[string]*flight{}}
	g.budget.Store(sharedBudget)
	return g
}

// flight is one shared upstream fetch.
type flight struct {
	g      *flightGroup
	key    string
	ctx    context.Context // the fetch's context: ends when every waiter left
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	refs     int   // waiters that still need the result
	reserved int64 // budget held by body

	// Results, set before done is closed.
	header http.Header
	body   []byte         // the whole body when shared
	err    error          // the upstream's error, shared by all
	resp   *http.Response // unshared: the leader streams this (prefix first)
	prefix []byte
}

// join returns the flight for key, and whether the caller leads it (and
// must call fetch). Every caller must end with exactly one call of leave.
func (g *flightGroup) join(key string) (*flight, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[key]; ok && f.ctx.Err() == nil {
		f.mu.Lock()
		if f.refs > 0 {
			f.refs++
			f.mu.Unlock()
			return f, false
		}
		f.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &flight{g: g, key: key, ctx: ctx, cancel: cancel, done: make(chan struct{}), refs: 1}
	g.m[key] = f
	return f, true
}

// leave drops one waiter; the last one cancels a fetch still running and
// returns the buffer's budget.
func (f *flight) leave() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	var res int64
	if last {
		res, f.reserved = f.reserved, 0
	}
	f.mu.Unlock()
	if last {
		f.cancel()
		f.g.budget.Add(res)
		f.g.forget(f)
	}
}

func (g *flightGroup) forget(f *flight) {
	g.mu.Lock()
	if g.m[f.key] == f {
		delete(g.m, f.key)
	}
	g.mu.Unlock()
}

// reserve takes n bytes of the shared-body budget.
func (f *flight) reserve(n int64) bool {
	if f.g.budget.Add(-n) < 0 {
		f.g.budget.Add(n)
		return false
	}
	f.mu.Lock()
	f.reserved += n
	f.mu.Unlock()
	return true
}

// fetch runs the upstream fetch for the flight and publishes its result.
// A body that fails mid-read is fetched once more: nothing has been
// answered yet, so a transient fault heals.
func (f *flight) fetch(up Fetcher, path string) {
	defer func() {
		f.g.forget(f)
		close(f.done)
	}()
	for attempt := 1; ; attempt++ {
		resp, err := up.Get(f.ctx, path)
		if err != nil {
			f.err = err
			return
		}
		f.header = resp.Header
		if resp.ContentLength > maxSharedBody {
			f.resp = resp
			return
		}
		body, complete, err := f.readSmall(resp)
		if err == nil && complete {
			resp.Body.Close()
			f.body = body
			return
		}
		if err == nil {
			// Too large or no budget left: the leader streams it.
			f.resp, f.prefix = resp, body
			return
		}
		resp.Body.Close()
		f.g.budget.Add(f.unreserve())
		if attempt >= 2 || f.ctx.Err() != nil {
			f.err = fmt.Errorf("read upstream body: %w", err)
			return
		}
	}
}

// readSmall reads resp's body while it fits maxSharedBody and the budget.
// complete reports that the whole body was read; when false (and err nil)
// body is the part read so far and resp.Body holds the rest.
func (f *flight) readSmall(resp *http.Response) (body []byte, complete bool, err error) {
	const chunk = 32 << 10
	var buf []byte
	if n := resp.ContentLength; n >= 0 {
		if !f.reserve(n + 1) {
			return nil, false, nil
		}
		buf = make([]byte, 0, n+1)
	}
	for {
		if len(buf) == cap(buf) {
			if len(buf)+chunk > maxSharedBody+1 || !f.reserve(chunk) {
				return buf, false, nil
			}
			buf = append(buf, make([]byte, chunk)...)[:len(buf)]
		}
		n, err := resp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		if len(buf) > maxSharedBody {
			return buf, false, nil
		}
	}
}

func (f *flight) unreserve() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.reserved
	f.reserved = 0
	return n
}

// forwardShared serves req from a shared fetch (see the comment above).
func (h *Handler) forwardShared(w http.ResponseWriter, r *http.Request, req Request, start time.Time) {
	f, leader := h.flights.join(req.Path)
	// Leaving early (the client went away) must not cancel the fetch for
	// the others; the last waiter to leave cancels it.
	left := make(chan struct{})
	stop := context.AfterFunc(r.Context(), func() { f.leave(); close(left) })
	release := func() {
		if stop() {
			f.leave()
		}
	}
	if leader {
		f.fetch(h.cfg.Upstream, req.Path)
		if f.err == nil {
			h.stats.upstreamLatency(time.Since(start))
		}
	} else {
		select {
		case <-f.done:
		case <-left:
			h.stats.cancelled()
			return
		}
	}
	switch {
	case f.err != nil:
		release()
		if errors.Is(f.err, context.Canceled) && r.Context().Err() == nil {
			// The fetch was cancelled under us (every earlier waiter
			// left just as we joined): fetch on our own.
			h.forwardDirect(w, r, req, start)
			return
		}
		h.fail(w, r, req, f.err, start)
	case f.body != nil:
		if !leader {
			h.stats.shared()
		}
		h.writeHeader(w, req, f.header)
		w.Header().Set("Content-Length", strconv.Itoa(len(f.body)))
		w.WriteHeader(http.StatusOK)
		n, err := w.Write(f.body)
		release()
		if err != nil {
			h.stats.cancelled()
			return
		}
		h.stats.done(req.Kind, int64(n), http.StatusOK)
	case leader:
		// Unshared: the leader streams what it fetched.
		defer release()
		defer f.resp.Body.Close()
		h.stream(w, r, req, f.resp, f.prefix, start)
	default:
		release()
		h.forwardDirect(w, r, req, start)
	}
}

package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// flakyServer is an upstream whose health the test switches: 503 (or a
// cut-off body) while down, 200 "ok <path>" while up.
type flakyServer struct {
	*httptest.Server
	down    atomic.Bool
	cutBody atomic.Bool
	hits    atomic.Int64
}

func newFlakyServer(t *testing.T) *flakyServer {
	t.Helper()
	s := &flakyServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		switch {
		case s.down.Load():
			http.Error(w, "down", http.StatusServiceUnavailable)
		case s.cutBody.Load():
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "short")
			w.(http.Flusher).Flush()
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		case r.URL.Path == "/missing/@v/list":
			http.NotFound(w, r)
		default:
			io.WriteString(w, "ok "+r.URL.Path)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func newTestClient(t *testing.T, list string, b Breaker) *Client {
	t.Helper()
	entries, err := ParseList(list)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Options{
		Entries:   entries,
		Transport: NewTransport(TransportOptions{Timeouts: DefaultTimeouts(5 * time.Second), Retry: Retry{Attempts: 1}}),
		Breaker:   b,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func get(t *testing.T, c *Client, path string) (string, error) {
	t.Helper()
	resp, err := c.Get(t.Context(), path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestBreakerPipeSkipsOpenUpstream(t *testing.T) {
	t.Parallel()
	a, b := newFlakyServer(t), newFlakyServer(t)
	a.down.Store(true)
	c := newTestClient(t, a.URL+"|"+b.URL, Breaker{Failures: 2, Cooldown: time.Hour})
	for i := range 5 {
		body, err := get(t, c, "m.test/@v/list")
		if err != nil || body != "ok /m.test/@v/list" {
			t.Fatalf("request %d: got %q, %v; want the secondary's answer", i, body, err)
		}
	}
	if got := a.hits.Load(); got != 2 {
		t.Errorf("primary got %d requests, want 2 (the circuit opens after 2 failures)", got)
	}
	if got := b.hits.Load(); got != 5 {
		t.Errorf("secondary got %d requests, want 5", got)
	}
	h := c.Health()
	if h[0].State != "open" || h[0].ConsecutiveFailures != 2 || h[0].Opens != 1 {
		t.Errorf("primary health = %+v, want open after 2 failures, opened once", h[0])
	}
	if h[1].State != "closed" {
		t.Errorf("secondary health = %+v, want closed", h[1])
	}
}

func TestBreakerCommaFailsFast(t *testing.T) {
	t.Parallel()
	a, b := newFlakyServer(t), newFlakyServer(t)
	a.down.Store(true)
	c := newTestClient(t, a.URL+","+b.URL, Breaker{Failures: 1, Cooldown: time.Hour})
	for i := range 3 {
		_, err := get(t, c, "m.test/@v/list")
		var ue *Error
		if !errors.As(err, &ue) || ue.NotFound() {
			t.Fatalf("request %d: got %v, want an *Error that is not not-found (',' does not fall through)", i, err)
		}
		var co *CircuitOpenError
		if i > 0 && !errors.As(err, &co) {
			t.Errorf("request %d: got %v, want a CircuitOpenError", i, err)
		}
		if i > 0 && !strings.Contains(err.Error(), "503") {
			t.Errorf("request %d: error %q does not carry the failure that opened the circuit", i, err)
		}
	}
	if a.hits.Load() != 1 || b.hits.Load() != 0 {
		t.Errorf("hits: primary %d, secondary %d; want 1 and 0", a.hits.Load(), b.hits.Load())
	}
}

func TestBreakerNotFoundIsHealthy(t *testing.T) {
	t.Parallel()
	a, b := newFlakyServer(t), newFlakyServer(t)
	c := newTestClient(t, a.URL+","+b.URL, Breaker{Failures: 1, Cooldown: time.Hour})
	for range 3 {
		if _, err := get(t, c, "missing/@v/list"); !IsNotFound(err) {
			t.Fatalf("got %v, want not found from both", err)
		}
	}
	if h := c.Health()[0]; h.State != "closed" || h.ConsecutiveFailures != 0 {
		t.Errorf("after 404s: health %+v, want closed with no failures", h)
	}
	if a.hits.Load() != 3 || b.hits.Load() != 3 {
		t.Errorf("hits: primary %d, secondary %d; want 3 each (',' falls through on 404)", a.hits.Load(), b.hits.Load())
	}
}

func TestBreakerHalfOpenTrial(t *testing.T) {
	t.Parallel()
	a, b := newFlakyServer(t), newFlakyServer(t)
	a.down.Store(true)
	// HealthInterval beyond the test: only the trial request can close it.
	c := newTestClient(t, a.URL+"|"+b.URL, Breaker{Failures: 1, Cooldown: 50 * time.Millisecond, HealthInterval: time.Hour})
	if _, err := get(t, c, "m.test/@v/list"); err != nil {
		t.Fatal(err)
	}
	if h := c.Health()[0]; h.State != "open" {
		t.Fatalf("health %+v, want open", h)
	}
	a.down.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for c.Health()[0].State != "closed" {
		if time.Now().After(deadline) {
			t.Fatalf("circuit still %s after the upstream recovered", c.Health()[0].State)
		}
		time.Sleep(20 * time.Millisecond)
		if _, err := get(t, c, "m.test/@v/list"); err != nil {
			t.Fatal(err)
		}
	}
	before := a.hits.Load()
	if _, err := get(t, c, "m.test/@v/list"); err != nil {
		t.Fatal(err)
	}
	if a.hits.Load() != before+1 {
		t.Errorf("closed circuit: primary not asked")
	}
}

func TestBreakerHealthCheckCloses(t *testing.T) {
	t.Parallel()
	a, b := newFlakyServer(t), newFlakyServer(t)
	a.down.Store(true)
	c := newTestClient(t, a.URL+"|"+b.URL, Breaker{Failures: 1, Cooldown: time.Hour, HealthInterval: 20 * time.Millisecond})
	if _, err := get(t, c, "m.test/@v/list"); err != nil {
		t.Fatal(err)
	}
	a.down.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for c.Health()[0].State != "closed" {
		if time.Now().After(deadline) {
			t.Fatalf("health check did not close the circuit: %+v", c.Health()[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBreakerCountsBrokenBody(t *testing.T) {
	t.Parallel()
	a := newFlakyServer(t)
	a.cutBody.Store(true)
	c := newTestClient(t, a.URL, Breaker{Failures: 2, Cooldown: time.Hour})
	_, err := get(t, c, "m.test/@v/v1.0.0.zip")
	var ue *Error
	if !errors.As(err, &ue) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read of a cut body: got %v, want an *Error wrapping io.ErrUnexpectedEOF", err)
	}
	if ue.Upstream != a.URL {
		t.Errorf("error names upstream %q, want %q", ue.Upstream, a.URL)
	}
	if h := c.Health()[0]; h.ConsecutiveFailures != 1 {
		t.Errorf("health %+v, want 1 failure", h)
	}
}

func TestBreakerCallerCancelIsNeutral(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// Accepts and never answers.
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	c := newTestClient(t, "http://"+ln.Addr().String(), Breaker{Failures: 1, Cooldown: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, "m.test/@v/list"); err == nil {
		t.Fatal("got success from a silent upstream")
	}
	if h := c.Health()[0]; h.State != "closed" {
		t.Errorf("the caller's own deadline opened the circuit: %+v", h)
	}
}

func TestBreakerDisabled(t *testing.T) {
	t.Parallel()
	a := newFlakyServer(t)
	a.down.Store(true)
	c := newTestClient(t, a.URL, Breaker{})
	for range 5 {
		get(t, c, "m.test/@v/list")
	}
	if a.hits.Load() != 5 {
		t.Errorf("breaker disabled: primary got %d requests, want 5", a.hits.Load())
	}
}

func TestRetryHealsTransientFailure(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	cases := []struct {
		name     string
		method   string
		attempts int
		want     int // status
		wantHits int64
	}{
		{"get heals", http.MethodGet, 3, 200, 3},
		{"get gives up", http.MethodGet, 2, 503, 2},
		{"post is not retried", http.MethodPost, 3, 503, 1},
	}
	for _, tc := range cases {
		hits.Store(0)
		rt := NewTransport(TransportOptions{Timeouts: DefaultTimeouts(5 * time.Second), Retry: Retry{Attempts: tc.attempts, Backoff: time.Millisecond}})
		req, _ := http.NewRequestWithContext(t.Context(), tc.method, srv.URL, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want || hits.Load() != tc.wantHits {
			t.Errorf("%s: got status %d after %d requests, want %d after %d", tc.name, resp.StatusCode, hits.Load(), tc.want, tc.wantHits)
		}
	}
}

func TestJitter(t *testing.T) {
	t.Parallel()
	const b = 100 * time.Millisecond
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := jittered(b)
		if d < b/2 || d > b*3/2 {
			t.Fatalf("jittered(%s) = %s, want within [%s, %s]", b, d, b/2, b*3/2)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("jittered(%s) gave %d distinct values in 1000 draws, want many", b, len(seen))
	}
	if got := jittered(0); got != 0 {
		t.Errorf("jittered(0) = %s, want 0", got)
	}
}

func TestPipeFailsOverWithoutRetrying(t *testing.T) {
	t.Parallel()
	a, b := newFlakyServer(t), newFlakyServer(t)
	a.down.Store(true)
	cases := []struct {
		name      string
		list      string
		wantAHits int64
	}{
		// '|' with a proxy after it: the next proxy is the retry.
		{"pipe", a.URL + "|" + b.URL, 1},
		// ',' (and the last entry) keep the transport's retries.
		{"comma", a.URL + "," + b.URL, 3},
		{"last", a.URL, 3},
	}
	for _, tc := range cases {
		a.hits.Store(0)
		entries, err := ParseList(tc.list)
		if err != nil {
			t.Fatal(err)
		}
		c := New(Options{Entries: entries, Transport: NewTransport(TransportOptions{Timeouts: DefaultTimeouts(5 * time.Second), Retry: Retry{Attempts: 3, Backoff: time.Millisecond}})})
		get(t, c, "m.test/@v/list")
		c.Close()
		if got := a.hits.Load(); got != tc.wantAHits {
			t.Errorf("%s: failing primary asked %d times, want %d", tc.name, got, tc.wantAHits)
		}
	}
}

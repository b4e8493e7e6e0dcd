package proxy

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// waitRefs waits until the flight for key has n waiters.
func waitRefs(t *testing.T, h *Handler, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.flights.mu.Lock()
		f := h.flights.m[key]
		h.flights.mu.Unlock()
		refs := 0
		if f != nil {
			f.mu.Lock()
			refs = f.refs
			f.mu.Unlock()
		}
		if refs >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("flight %s has %d waiters, want %d", key, refs, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkDrained checks that no flight is left and the budget is whole.
func checkDrained(t *testing.T, h *Handler) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.flights.mu.Lock()
		n := len(h.flights.m)
		h.flights.mu.Unlock()
		b := h.flights.budget.Load()
		if n == 0 && b == sharedBudget {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the requests: %d flights left, budget %d, want 0 and %d", n, b, sharedBudget)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSingleFlight(t *testing.T) {
	t.Parallel()
	mods := testModules(1, 1200<<10)
	cases := []struct {
		name     string
		path     string
		n        int // concurrent identical requests
		wantHits int // upstream fetches for them; 0: any
		gate     bool
	}{
		{name: "mod", path: "example.test/ma/@v/v1.0.0.mod", n: 32, wantHits: 1, gate: true},
		{name: "info", path: "example.test/ma/@v/v1.0.0.info", n: 32, wantHits: 1, gate: true},
		{name: "small zip", path: "example.test/ma/@v/v1.0.0.zip", n: 32, wantHits: 1, gate: true},
		// Over 1 MiB: streamed by the leader, the others fetch alone.
		{name: "big zip", path: "example.test/big/@v/v1.0.0.zip", n: 6},
		// Mutable: never shared.
		{name: "list", path: "example.test/ma/@v/list", n: 8, wantHits: 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := tc.n
			m := newMTLS(t)
			ms := newModServer(t, mods)
			want, err := fsRead(ms, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			gate := make(chan struct{})
			if tc.gate {
				ms.setHook(func(w http.ResponseWriter, r *http.Request) bool {
					<-gate
					return false
				})
			} else {
				close(gate)
			}
			srv := m.serve(t, ms)
			base, h := newAgent(t, m.newClient(t, srv.URL, clientOpts{}), nil)
			var wg sync.WaitGroup
			var bad atomic.Int64
			for range n {
				wg.Go(func() {
					code, body, err := fetch(t, http.DefaultClient, base+"/"+tc.path)
					if err != nil || code != 200 || !bytes.Equal(body, want) {
						bad.Add(1)
						t.Errorf("GET %s: status %d, %d bytes, %v; want 200 and %d bytes", tc.path, code, len(body), err, len(want))
					}
				})
			}
			if tc.gate {
				waitRefs(t, h, tc.path, n)
				close(gate)
			}
			wg.Wait()
			hits := ms.count(tc.path)
			switch {
			case tc.wantHits > 0 && hits != tc.wantHits:
				t.Errorf("%d identical concurrent requests made %d upstream fetches, want %d", n, hits, tc.wantHits)
			case tc.wantHits == 0 && hits < 1:
				t.Errorf("no upstream fetch")
			}
			st := h.Stats()
			if st.Failures != 0 || st.BodyErrors != 0 || bad.Load() != 0 {
				t.Errorf("stats %+v: want no failures", st)
			}
			if tc.wantHits == 1 && st.Shared != int64(n-1) {
				t.Errorf("stats: %d shared, want %d", st.Shared, n-1)
			}
			checkDrained(t, h)
		})
	}
}

func fsRead(ms *modServer, p string) ([]byte, error) {
	f, err := ms.root.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// A follower keeps its answer when the leader's client goes away, and the
// last waiter to leave cancels the fetch.
func TestSingleFlightLeaderLeaves(t *testing.T) {
	t.Parallel()
	m := newMTLS(t)
	ms := newModServer(t, testModules(1, 0))
	const p = "example.test/ma/@v/v1.0.0.mod"
	gate := make(chan struct{})
	ms.setHook(func(w http.ResponseWriter, r *http.Request) bool { <-gate; return false })
	srv := m.serve(t, ms)
	base, h := newAgent(t, m.newClient(t, srv.URL, clientOpts{}), nil)

	ctx, cancel := context.WithCancel(t.Context())
	leaderDone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+p, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		leaderDone <- err
	}()
	waitRefs(t, h, p, 1)
	followerDone := make(chan []byte, 1)
	go func() {
		_, body, _ := fetch(t, http.DefaultClient, base+"/"+p)
		followerDone <- body
	}()
	waitRefs(t, h, p, 2)
	cancel()
	if err := <-leaderDone; err == nil {
		t.Errorf("cancelled leader: got a response")
	}
	close(gate)
	want, _ := fsRead(ms, p)
	if got := <-followerDone; !bytes.Equal(got, want) {
		t.Errorf("follower got %q, want %q", got, want)
	}
	checkDrained(t, h)

	// Everybody leaves: the fetch is cancelled, nothing is left behind.
	gate2 := make(chan struct{})
	defer close(gate2)
	ms.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-gate2:
		case <-r.Context().Done():
		}
		return true
	})
	ctx2, cancel2 := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx2, http.MethodGet, base+"/example.test/ma/@v/v1.0.0.info", nil)
	go func() { waitRefs(t, h, "example.test/ma/@v/v1.0.0.info", 1); cancel2() }()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("cancelled request got a response")
	}
	checkDrained(t, h)
}

// A small body cut mid-stream is fetched again before anything is
// answered: the client sees a clean 200.
func TestSingleFlightBodyRetry(t *testing.T) {
	t.Parallel()
	m := newMTLS(t)
	ms := newModServer(t, testModules(1, 0))
	const p = "example.test/ma/@v/v1.0.0.zip"
	want, _ := fsRead(ms, p)
	var cuts atomic.Int64
	ms.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if cuts.Add(1) > 1 {
			return false
		}
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(200)
		w.Write(want[:len(want)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // resets the HTTP/2 stream
	})
	srv := m.serve(t, ms)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	base, h := newAgent(t, m.newClient(t, srv.URL, clientOpts{}), nil)
	code, body, err := fetch(t, http.DefaultClient, base+"/"+p)
	if err != nil || code != 200 || !bytes.Equal(body, want) {
		t.Fatalf("got %d, %d bytes, %v; want 200 and %d bytes", code, len(body), err, len(want))
	}
	if cuts.Load() != 2 {
		t.Errorf("upstream asked %d times, want 2", cuts.Load())
	}
	if st := h.Stats(); st.Failures != 0 || st.BodyErrors != 0 {
		t.Errorf("stats %+v, want no failures", st)
	}
	checkDrained(t, h)
}

// BenchmarkSingleFlight measures upstream fetches for 64 identical
// concurrent .mod requests (metric upstream-fetches/op; 64 without
// single-flight).
func BenchmarkSingleFlight(b *testing.B) {
	m := newMTLS(b)
	ms := newModServer(b, []testenv.Module{{Path: "example.test/ma", Version: "v1.0.0"}})
	srv := m.serve(b, ms)
	base, _ := newAgent(b, m.newClient(b, srv.URL, clientOpts{}), nil)
	const p = "example.test/ma/@v/v1.0.0.mod"
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				if code, _, err := fetch(b, c, base+"/"+p); err != nil || code != 200 {
					b.Errorf("status %d, %v", code, err)
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(float64(ms.count(p))/float64(b.N), "upstream-fetches/op")
}

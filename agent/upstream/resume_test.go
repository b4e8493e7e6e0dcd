package upstream

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/faultproxy"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

const zipPath = "example.test/m/@v/v1.0.0.zip"

// faultServer serves files through a faultproxy.Handler on 127.0.0.1
// (over TLS with HTTP/2 when h2) and returns the client for it.
func faultServer(t *testing.T, files map[string][]byte, opts faultproxy.Options, h2 bool, wrap func(http.Handler) http.Handler, b Breaker) (*Client, *faultproxy.Handler) {
	t.Helper()
	return faultServerIdle(t, files, opts, h2, wrap, b, 200*time.Millisecond)
}

// faultServerIdle is faultServer with an idle-body timeout of idle.
func faultServerIdle(t *testing.T, files map[string][]byte, opts faultproxy.Options, h2 bool, wrap func(http.Handler) http.Handler, b Breaker, idle time.Duration) (*Client, *faultproxy.Handler) {
	t.Helper()
	fsys := fstest.MapFS{}
	for p, d := range files {
		fsys[p] = &fstest.MapFile{Data: d}
	}
	fh := faultproxy.New(fsys, opts)
	t.Cleanup(fh.Close)
	var h http.Handler = fh
	if wrap != nil {
		h = wrap(fh)
	}
	srv := httptest.NewUnstartedServer(h)
	var origins []Origin
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
		roots := x509.NewCertPool()
		roots.AddCert(srv.Certificate())
		origins = []Origin{{Host: strings.TrimPrefix(srv.URL, "https://"), Roots: roots}}
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	entries, err := ParseList(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	timeouts := Timeouts{Connect: 5 * time.Second, TLSHandshake: 5 * time.Second, ResponseHeader: 2 * time.Second, IdleBody: idle}
	c := New(Options{
		Entries:   entries,
		Transport: NewTransport(TransportOptions{Origins: origins, Timeouts: timeouts, Retry: Retry{Attempts: 3, Backoff: 10 * time.Millisecond}}),
		Breaker:   b,
	})
	t.Cleanup(func() { c.Close() })
	return c, fh
}

func TestResume(t *testing.T) {
	t.Parallel()
	data := testenv.Noise(300 << 10)
	half := int64(len(data) / 2)
	cases := []struct {
		name    string
		opts    faultproxy.Options
		h2      bool
		resumes int64 // want; 0 with wantErr
		retries int64
		wantErr string // in the read error; "" for success
	}{
		{name: "cut (connection closed)", opts: faultproxy.Options{Fault: faultproxy.Cut}, resumes: 1},
		{name: "HTTP/2 stream reset", opts: faultproxy.Options{Fault: faultproxy.Cut}, h2: true, resumes: 1},
		{name: "stall", opts: faultproxy.Options{Fault: faultproxy.Stall}, resumes: 1},
		{name: "stall over HTTP/2", opts: faultproxy.Options{Fault: faultproxy.Stall}, h2: true, resumes: 1},
		{name: "cut twice", opts: faultproxy.Options{Fault: faultproxy.Cut, Times: 2, CutAfter: 50 << 10}, resumes: 2},
		{name: "reset before the answer is retried", opts: faultproxy.Options{Fault: faultproxy.Reset}, retries: 1},
		{name: "503 is retried", opts: faultproxy.Options{Fault: faultproxy.Unavailable}, retries: 1},
		{name: "silence before the answer is retried", opts: faultproxy.Options{Fault: faultproxy.Silent}, retries: 1},
		{name: "no Range support", opts: faultproxy.Options{Fault: faultproxy.Cut, NoRange: true}, wantErr: "not resumed: the upstream answered 200 to a Range request"},
		{name: "ETag changed", opts: faultproxy.Options{Fault: faultproxy.Cut, ChangingETag: true}, wantErr: "not resumed: the upstream answered 200 to a Range request"},
		{name: "no validator", opts: faultproxy.Options{Fault: faultproxy.Cut, NoValidators: true}, wantErr: "not resumed: the upstream sent no validator"},
		{name: "cut every time", opts: faultproxy.Options{Fault: faultproxy.Cut, Times: 100, CutAfter: 1}, resumes: maxResumes, wantErr: "not resumed: gave up after"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, fh := faultServer(t, map[string][]byte{zipPath: data}, tc.opts, tc.h2, nil, Breaker{})
			resp, err := c.Get(t.Context(), zipPath)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if tc.h2 && resp.ProtoMajor != 2 {
				t.Fatalf("answered over %s, want HTTP/2: the case proves nothing", resp.Proto)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			h := c.Health()[0]
			if tc.wantErr != "" {
				var ue *Error
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &ue) {
					t.Fatalf("read: got %d bytes, error %v; want an *Error containing %q", len(got), err, tc.wantErr)
				}
				if bytes.Equal(got, data) {
					t.Errorf("read failed but returned the whole body")
				}
				if !bytes.HasPrefix(data, got) {
					t.Errorf("the %d bytes read before the failure are not the file's start: unvalidated bytes were spliced", len(got))
				}
				if h.Resumes != tc.resumes || h.ResumeFailures != 1 {
					t.Errorf("counters %+v, want %d resumes and 1 resume failure", h.Counters, tc.resumes)
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read: %d bytes, %v; want the whole %d-byte file", len(got), err, len(data))
			}
			if h.Resumes != tc.resumes || h.Retries != tc.retries || h.ResumeFailures != 0 {
				t.Errorf("counters %+v, want %d resumes, %d retries, no resume failure", h.Counters, tc.resumes, tc.retries)
			}
			if tc.resumes > 0 {
				cut := tc.opts.CutAfter
				if cut == 0 {
					cut = half
				}
				// Every resume saves what came before it.
				if h.ResumedBytes < cut*tc.resumes {
					t.Errorf("resumed bytes %d, want at least %d", h.ResumedBytes, cut*tc.resumes)
				}
				fh.Wait()
				if n := fh.Counts(); n.Partial != tc.resumes || n.BytesSent != int64(len(data)) {
					t.Errorf("upstream saw %+v; want %d 206 answers and %d body bytes sent in all (none twice)", n, tc.resumes, len(data))
				}
			}
			if fh.Counts().Faults == 0 {
				t.Errorf("no fault was injected: the case proves nothing")
			}
		})
	}
}

// TestResumeStallSooner: a resumable body that stalls longer than
// ResumeStall is continued then, not after the idle-body timeout: the
// Range request reaches the upstream while the first answer is still
// stalled there. A body that cannot be resumed keeps the idle-body
// timeout: its stall ends with the upstream's abort, not a StallError.
func TestResumeStallSooner(t *testing.T) {
	t.Parallel()
	const idle, stall = 30 * time.Second, 10 * time.Second
	data := testenv.Noise(300 << 10)
	cases := []struct {
		name      string
		opts      faultproxy.Options
		resumable bool
	}{
		{name: "resumable", opts: faultproxy.Options{Fault: faultproxy.Stall, StallFor: stall}, resumable: true},
		{name: "no validator", opts: faultproxy.Options{Fault: faultproxy.Stall, StallFor: stall, NoValidators: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The stalled answer stays stalled for StallFor even after
			// the client hangs up, and a Range request records whether
			// it arrived during that stall.
			var stalling, rangeDuringStall atomic.Int32
			wrap := func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Header.Get("Range") != "" {
						rangeDuringStall.Store(stalling.Load())
						h.ServeHTTP(w, r)
						return
					}
					stalling.Add(1)
					defer stalling.Add(-1)
					h.ServeHTTP(w, r.WithContext(context.WithoutCancel(r.Context())))
				})
			}
			c, fh := faultServerIdle(t, map[string][]byte{zipPath: data}, tc.opts, false, wrap, Breaker{}, idle)
			resp, err := c.Get(t.Context(), zipPath)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			fh.Close() // end the upstream's stall: the server's Close waits for it
			h := c.Health()[0]
			var se *StallError
			if !tc.resumable {
				if err == nil || errors.As(err, &se) {
					t.Fatalf("read: %d bytes, error %v; want the upstream's abort after its %s stall, not a StallError after %s", len(got), err, stall, ResumeStall)
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read: %d bytes, %v; want the whole %d-byte file", len(got), err, len(data))
			}
			if h.Resumes != 1 || h.ResumeFailures != 0 {
				t.Errorf("counters %+v, want 1 resume and no resume failure", h.Counters)
			}
			if n := fh.Counts(); n.Faults != 1 || n.Partial != 1 {
				t.Errorf("upstream saw %+v, want 1 fault and 1 206 answer", n)
			}
			if rangeDuringStall.Load() != 1 {
				t.Errorf("the Range request reached the upstream after the %s stall ended: the body waited for the upstream's abort, not %s", stall, ResumeStall)
			}
		})
	}
}

// TestResumeOnlyImmutable: a @v/list that breaks is not resumed (it may
// have changed); the caller refetches it whole.
func TestResumeOnlyImmutable(t *testing.T) {
	t.Parallel()
	list := []byte(strings.Repeat("v1.0.0\n", 20000))
	c, fh := faultServer(t, map[string][]byte{"example.test/m/@v/list": list}, faultproxy.Options{Fault: faultproxy.Cut, Match: func(string) bool { return true }}, false, nil, Breaker{})
	resp, err := c.Get(t.Context(), "example.test/m/@v/list")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("a cut @v/list read whole")
	}
	if n := fh.Counts(); n.Ranges != 0 {
		t.Errorf("the upstream got %d Range requests for a @v/list, want 0", n.Ranges)
	}
}

func TestImmutable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		path string
		want bool
	}{
		{"example.com/m/@v/v1.2.3.zip", true},
		{"example.com/m/@v/v1.2.3.mod", true},
		{"example.com/m/@v/v1.2.3.info", true},
		{"example.com/m/@v/v2.0.0+incompatible.zip", true},
		{"example.com/m/@v/v0.0.0-20240102030405-abcdefabcdef.zip", true},
		{"golang.org/toolchain/@v/v0.0.1-go1.26.0.linux-amd64.zip", true},
		{"github.com/!burnt!sushi/toml/@v/v1.3.2.zip", true},
		{"example.com/m/@v/v1.2.3-!r!c1.zip", true},
		{"example.com/m/@v/v1.2.3-!.zip", false},
		{"example.com/m/@v/master.info", false},
		{"example.com/m/@v/v1.2.info", false},
		{"example.com/m/@v/list", false},
		{"example.com/m/@latest", false},
		{"sumdb/sum.golang.org/tile/8/0/001", true},
		{"sumdb/sum.golang.org/tile/8/1/000.p/5", true},
		{"sumdb/sum.golang.org/latest", false},
		{"sumdb/sum.golang.org/lookup/example.com/tile/m@v1.0.0", false},
		{"sumdb/sum.golang.org/supported", false},
	}
	for _, tc := range cases {
		if got := Immutable(tc.path); got != tc.want {
			t.Errorf("Immutable(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in                 string
		first, last, total int64
		ok                 bool
	}{
		{"bytes 10-99/100", 10, 99, 100, true},
		{"bytes 0-0/1", 0, 0, 1, true},
		{"bytes 10-99/*", 10, 99, -1, true},
		{"bytes 10-99/99", 0, 0, 0, false},
		{"bytes 99-10/100", 0, 0, 0, false},
		{"bytes */100", 0, 0, 0, false},
		{"items 1-2/3", 0, 0, 0, false},
		{"bytes -1-2/3", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tc := range cases {
		f, l, n, err := parseContentRange(tc.in)
		if (err == nil) != tc.ok || tc.ok && (f != tc.first || l != tc.last || n != tc.total) {
			t.Errorf("parseContentRange(%q) = %d, %d, %d, %v; want %d, %d, %d, ok %v", tc.in, f, l, n, err, tc.first, tc.last, tc.total, tc.ok)
		}
	}
}

// barrier holds every request until n have arrived: they are all in
// flight when the network event hits them.
func barrier(n int) func(http.Handler) http.Handler {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if arrived++; arrived == n {
				close(all)
			}
			mu.Unlock()
			<-all
			next.ServeHTTP(w, r)
		})
	}
}

// TestBreakerCountsAnEventOnce: bodies broken together by one event (and
// not resumable) are one failure for the circuit; requests that got no
// answer after all their retries count each, together or one after the
// other, and open it (a dead upstream still fails fast).
func TestBreakerCountsAnEventOnce(t *testing.T) {
	t.Parallel()
	const burst, failures = 8, 3
	files := map[string][]byte{}
	for i := range burst {
		files[fmt.Sprintf("example.test/m%d/@v/v1.0.0.zip", i)] = testenv.Noise(64 << 10)
	}
	cut := faultproxy.Options{Fault: faultproxy.Cut, NoRange: true, Times: 100}
	// A 200 header resets the count: only failures before it open the
	// circuit one after the other.
	busy := faultproxy.Options{Fault: faultproxy.Unavailable, Times: 100}
	read := func(c *Client, p string) error {
		resp, err := c.Get(t.Context(), p)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	t.Run("burst", func(t *testing.T) {
		t.Parallel()
		c, _ := faultServer(t, files, cut, false, barrier(burst), Breaker{Failures: failures, Cooldown: time.Hour})
		var wg sync.WaitGroup
		errs := make(chan error, burst)
		for p := range files {
			wg.Go(func() { errs <- read(c, p) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err == nil {
				t.Fatalf("a cut body read whole: the fault was not injected")
			}
		}
		h := c.Health()[0]
		if h.State != "closed" || h.ConsecutiveFailures != 1 || h.CoalescedFailures != burst-1 {
			t.Errorf("after %d bodies cut together: %+v; want closed, 1 failure, %d coalesced", burst, h, burst-1)
		}
	})
	t.Run("burst of no answers", func(t *testing.T) {
		t.Parallel()
		c, _ := faultServer(t, files, busy, false, barrier(burst), Breaker{Failures: failures, Cooldown: time.Hour})
		var wg sync.WaitGroup
		for p := range files {
			wg.Go(func() { read(c, p) })
		}
		wg.Wait()
		if h := c.Health()[0]; h.State != "open" || h.CoalescedFailures != 0 {
			t.Errorf("after %d requests answered 503 through all their retries: %+v; want open, none coalesced", burst, h)
		}
	})
	t.Run("sequential", func(t *testing.T) {
		t.Parallel()
		c, _ := faultServer(t, files, busy, false, nil, Breaker{Failures: failures, Cooldown: time.Hour})
		for i := range failures {
			if err := read(c, fmt.Sprintf("example.test/m%d/@v/v1.0.0.zip", i)); err == nil {
				t.Fatalf("a 503 read whole")
			}
		}
		if h := c.Health()[0]; h.State != "open" || h.ConsecutiveFailures != failures {
			t.Errorf("after %d failures one after the other: %+v; want open", failures, h)
		}
	})
}

// TestResumeError: the message keeps the break and says why it was not
// resumed; a stall stays a timeout.
func TestResumeError(t *testing.T) {
	t.Parallel()
	e := &Error{Upstream: "https://u", URL: "https://u/x", Err: &ResumeError{Err: ErrIdleBody, Reason: "no validator"}}
	if !e.Timeout() || !errors.Is(e, ErrIdleBody) {
		t.Errorf("%v: Timeout %v, want a timeout wrapping ErrIdleBody", e, e.Timeout())
	}
	if want := ErrIdleBody.Error() + " (not resumed: no validator)"; !strings.HasSuffix(e.Error(), want) {
		t.Errorf("Error() = %q, want it to end with %q", e.Error(), want)
	}
}

// brokenAfter reads b, then fails as a cut connection does.
type brokenAfter struct{ r io.Reader }

func (b *brokenAfter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// TestResumeRefusesBadContinuation: a 206 is spliced only when it
// provably continues the same representation and delivers exactly the
// bytes its Content-Range names; whatever the upstream's answer, the
// reader gets either the whole file or an error after a prefix of it.
func TestResumeRefusesBadContinuation(t *testing.T) {
	t.Parallel()
	data := []byte(strings.Repeat("0123456789", 10))
	const cut = 40
	now := time.Now().UTC()
	date := now.Format(http.TimeFormat)
	old := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat)
	other := bytes.Repeat([]byte("Z"), len(data)-cut)
	multipartBody := []byte(("--B\r\nContent-Type: application/zip\r\nContent-Range: bytes 40-99/100\r\n\r\n" + strings.Repeat("x", 60))[:len(data)-cut])
	type answer struct {
		header map[string]string
		cl     int64
		body   []byte
	}
	cases := []struct {
		name    string
		first   answer // body: data, cut at 40
		cont    answer // status 206
		wantErr string // "" for the whole file
	}{
		{"valid", answer{map[string]string{"ETag": `"a"`}, 100, nil},
			answer{map[string]string{"ETag": `"a"`, "Content-Range": "bytes 40-99/100"}, 60, data[cut:]}, ""},
		{"valid, first length unknown", answer{map[string]string{"ETag": `"a"`}, -1, nil},
			answer{map[string]string{"ETag": `"a"`, "Content-Range": "bytes 40-99/100"}, -1, data[cut:]}, ""},
		{"total unknown, ends short", answer{map[string]string{"ETag": `"a"`}, 100, nil},
			answer{map[string]string{"ETag": `"a"`, "Content-Range": "bytes 40-79/*"}, 40, data[cut:80]}, "ends at byte 79"},
		{"longer than its Content-Range", answer{map[string]string{"ETag": `"a"`}, 100, nil},
			answer{map[string]string{"ETag": `"a"`, "Content-Range": "bytes 40-99/100"}, -1, append(append([]byte{}, data[cut:]...), "EXTRA"...)}, "longer than its Content-Range"},
		{"shorter than its Content-Range", answer{map[string]string{"ETag": `"a"`}, 100, nil},
			answer{map[string]string{"ETag": `"a"`, "Content-Range": "bytes 40-99/100"}, -1, data[cut:70]}, "not resumed"},
		{"multipart/byteranges", answer{map[string]string{"ETag": `"a"`}, 100, nil},
			answer{map[string]string{"ETag": `"a"`, "Content-Range": "bytes 40-99/100", "Content-Type": "multipart/byteranges; boundary=B"}, -1, multipartBody}, "multipart"},
		{"weak ETag changed", answer{map[string]string{"ETag": `W/"a"`, "Last-Modified": old, "Date": date}, 100, nil},
			answer{map[string]string{"ETag": `W/"b"`, "Last-Modified": old, "Content-Range": "bytes 40-99/100"}, 60, other}, "another ETag"},
		{"Last-Modified changed (If-Range ignored)", answer{map[string]string{"Last-Modified": old, "Date": date}, 100, nil},
			answer{map[string]string{"Last-Modified": date, "Content-Range": "bytes 40-99/100"}, 60, other}, "another Last-Modified"},
		{"Last-Modified within a second of Date", answer{map[string]string{"Last-Modified": date, "Date": date}, 100, nil},
			answer{map[string]string{"Last-Modified": date, "Content-Range": "bytes 40-99/100"}, 60, other}, "less than a minute before its Date"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			header := func(a answer) http.Header {
				h := http.Header{}
				for k, v := range a.header {
					h.Set(k, v)
				}
				return h
			}
			first := &http.Response{StatusCode: http.StatusOK, Header: header(tc.first), ContentLength: tc.first.cl,
				Body: io.NopCloser(&brokenAfter{bytes.NewReader(data[:cut])})}
			refetches := 0
			refetch := func(ctx context.Context, h http.Header) (*http.Response, error) {
				refetches++
				if got := h.Get("Range"); refetches == 1 && got != "bytes=40-" {
					t.Errorf("Range %q, want bytes=40-", got)
				}
				return &http.Response{StatusCode: http.StatusPartialContent, Header: header(tc.cont), ContentLength: tc.cont.cl,
					Body: io.NopCloser(bytes.NewReader(tc.cont.body))}, nil
			}
			body := ResumeBody(t.Context(), zipPath, first, refetch)
			got, err := io.ReadAll(body)
			if tc.wantErr == "" {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("got %q, %v; want the whole file", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %d bytes, error %v; want an error containing %q", len(got), err, tc.wantErr)
			}
			if !bytes.HasPrefix(data, got) {
				t.Errorf("got %q: not a prefix of the file, bytes of another answer were spliced", got)
			}
		})
	}
}

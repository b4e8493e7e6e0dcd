package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// toxi drives a real toxiproxy server over its HTTP API on loopback.
type toxi struct{ api string }

func startToxiproxy(t *testing.T) *toxi {
	t.Helper()
	port := testenv.FreePort(t)
	cmd := exec.CommandContext(t.Context(), testenv.Tool(t, "toxiproxy-server"), "-host", "127.0.0.1", "-port", fmt.Sprint(port))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	tp := &toxi{api: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(tp.api + "/version")
		if err == nil {
			resp.Body.Close()
			return tp
		}
		if time.Now().After(deadline) {
			t.Fatalf("toxiproxy-server did not start: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (tp *toxi) call(t *testing.T, method, path string, body any, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, tp.api+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("toxiproxy %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("toxiproxy %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("toxiproxy %s %s: %v", method, path, err)
		}
	}
}

// proxy creates a proxy to upstreamAddr and returns its listen address.
func (tp *toxi) proxy(t *testing.T, name, upstreamAddr string) string {
	t.Helper()
	var p struct{ Listen string }
	tp.call(t, http.MethodPost, "/proxies", map[string]any{"name": name, "listen": "127.0.0.1:0", "upstream": upstreamAddr, "enabled": true}, &p)
	return p.Listen
}

func (tp *toxi) addToxic(t *testing.T, proxy, name, typ, stream string, attrs map[string]any) {
	t.Helper()
	tp.call(t, http.MethodPost, "/proxies/"+proxy+"/toxics", map[string]any{"name": name, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attrs}, nil)
}

func (tp *toxi) removeToxic(t *testing.T, proxy, name string) {
	t.Helper()
	tp.call(t, http.MethodDelete, "/proxies/"+proxy+"/toxics/"+name, nil, nil)
}

// watchLog is an hclog sink that closes a channel when a line contains
// want.
type watchLog struct {
	want string
	once sync.Once
	seen chan struct{}
	buf  testenv.SyncBuffer
}

func (w *watchLog) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return w.buf.Write(p)
}

func TestFaults(t *testing.T) {
	t.Parallel()
	tp := startToxiproxy(t)
	mods := append(testModules(1, 1200<<10), testenv.Module{Path: "example.test/mid", Version: "v1.0.0", Files: map[string]string{
		"mid.go": "package mid\n", "data.bin": randomText(300 << 10)}})
	const (
		small = "example.test/ma/@v/v1.0.0.zip"
		mid   = "example.test/mid/@v/v1.0.0.zip" // shared (≤ 1 MiB), buffered
		big   = "example.test/big/@v/v1.0.0.zip" // streamed
	)
	m := newMTLS(t)
	ms := newModServer(t, mods)
	srv := m.serve(t, ms)
	upAddr := srv.Listener.Addr().String()
	want := map[string][]byte{}
	for _, p := range []string{small, mid, big} {
		want[p], _ = fsRead(ms, p)
	}
	timeouts := upstream.Timeouts{Connect: 2 * time.Second, TLSHandshake: 2 * time.Second, ResponseHeader: 500 * time.Millisecond, IdleBody: 500 * time.Millisecond}

	// agent returns an agent whose only upstream goes through a fresh
	// toxiproxy proxy.
	agent := func(t *testing.T, retry upstream.Retry, log hclog.Logger) (base, proxyName string, h *Handler) {
		proxyName = strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
		addr := tp.proxy(t, proxyName, upAddr)
		if retry.Attempts == 0 {
			retry = upstream.Retry{Attempts: 2, Backoff: 10 * time.Millisecond}
		}
		c := m.newClient(t, "https://"+addr, clientOpts{timeouts: timeouts, retry: retry, log: log})
		base, h = newAgent(t, c, log)
		return base, proxyName, h
	}
	intact := func(t *testing.T, base, p string) {
		t.Helper()
		code, body, err := fetch(t, http.DefaultClient, base+"/"+p)
		if err != nil || code != 200 || !bytes.Equal(body, want[p]) {
			t.Fatalf("GET %s: %d, %d bytes, %v; want 200 and %d bytes", p, code, len(body), err, len(want[p]))
		}
	}

	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		base, name, _ := agent(t, upstream.Retry{}, nil)
		tp.addToxic(t, name, "lat", "latency", "downstream", map[string]any{"latency": 100, "jitter": 20})
		intact(t, base, small)
		intact(t, base, big)
	})
	t.Run("bandwidth", func(t *testing.T) {
		t.Parallel()
		base, name, _ := agent(t, upstream.Retry{}, nil)
		tp.addToxic(t, name, "bw", "bandwidth", "downstream", map[string]any{"rate": 2048}) // KB/s
		intact(t, base, big)
	})
	t.Run("slicer", func(t *testing.T) {
		t.Parallel()
		base, name, _ := agent(t, upstream.Retry{}, nil)
		tp.addToxic(t, name, "slice", "slicer", "downstream", map[string]any{"average_size": 1024, "size_variation": 768, "delay": 20})
		intact(t, base, small)
		intact(t, base, mid)
	})
	t.Run("retry heals a transient reset", func(t *testing.T) {
		t.Parallel()
		w := &watchLog{want: "retrying upstream request", seen: make(chan struct{})}
		log := hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: w})
		// The backoff (150-450ms) leaves time to lift the fault.
		base, name, h := agent(t, upstream.Retry{Attempts: 3, Backoff: 300 * time.Millisecond}, log)
		tp.addToxic(t, name, "reset", "reset_peer", "upstream", map[string]any{"timeout": 0})
		go func() {
			select {
			case <-w.seen:
				tp.removeToxic(t, name, "reset")
			case <-time.After(20 * time.Second):
			}
		}()
		intact(t, base, big)
		select {
		case <-w.seen:
		default:
			t.Fatalf("no retry happened: the fault was not injected; log:\n%s", w.buf.String())
		}
		if st := h.Stats(); st.Failures != 0 || st.BodyErrors != 0 {
			t.Errorf("stats %+v, want no failures", st)
		}
	})
	t.Run("reset mid zip aborts", func(t *testing.T) {
		t.Parallel()
		base, name, h := agent(t, upstream.Retry{}, nil)
		// The connection dies after 200 kB from the upstream.
		tp.addToxic(t, name, "cut", "limit_data", "downstream", map[string]any{"bytes": 200_000})
		code, body, err := fetch(t, http.DefaultClient, base+"/"+big)
		if err == nil {
			t.Fatalf("big zip cut by the upstream: got %d and a clean %d-byte body %q, want a broken body", code, len(body), body)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("reading the cut zip: %v, want unexpected EOF", err)
		}
		if st := h.Stats(); st.BodyErrors != 1 {
			t.Errorf("stats %+v, want 1 body error", st)
		}
		// The real go command refuses it and caches nothing.
		modcache := t.TempDir()
		env := append(testenv.GoEnv(t, modcache), "GOPROXY="+base, "GOFLAGS=-modcacherw")
		out, err := testenv.RunGo(t, t.TempDir(), env, "mod", "download", "example.test/big@v1.0.0")
		if err == nil {
			t.Fatalf("go mod download of a cut zip succeeded:\n%s", out)
		}
		if !strings.Contains(out, "unexpected EOF") {
			t.Errorf("go mod download failed for another reason than the cut body:\n%s", out)
		}
		for _, p := range []string{"cache/download/example.test/big/@v/v1.0.0.zip", "example.test/big@v1.0.0"} {
			if _, err := os.Stat(filepath.Join(modcache, p)); err == nil {
				t.Errorf("module cache holds %s after a cut download", p)
			}
		}
	})
	t.Run("reset mid small body answers 502", func(t *testing.T) {
		t.Parallel()
		base, name, _ := agent(t, upstream.Retry{}, nil)
		// Past the TLS handshake, not past the zip; every connection
		// (the re-fetch's too) is cut.
		tp.addToxic(t, name, "cut", "limit_data", "downstream", map[string]any{"bytes": 100_000})
		code, body, err := fetch(t, http.DefaultClient, base+"/"+mid)
		// Where toxiproxy's cut lands decides how the upstream connection
		// ends: a short body, a closed connection or a reset.
		cut := false
		for _, s := range []string{"unexpected EOF", "EOF", "reset", "closed", "broken pipe"} {
			cut = cut || strings.Contains(string(body), s)
		}
		if err != nil || code != http.StatusBadGateway || !cut {
			t.Fatalf("cut zip below 1 MiB: %d, %v, body:\n%s\nwant a 502 naming the cut", code, err, body)
		}
	})
	t.Run("stall before headers answers 504", func(t *testing.T) {
		t.Parallel()
		base, name, h := agent(t, upstream.Retry{}, nil)
		intact(t, base, small) // connection established
		tp.addToxic(t, name, "stall", "timeout", "downstream", map[string]any{"timeout": 0})
		code, body, err := fetch(t, http.DefaultClient, base+"/example.test/ma/@v/v1.0.0.mod")
		if err != nil || code != http.StatusGatewayTimeout {
			t.Fatalf("stalled upstream: %d %q %v, want 504", code, body, err)
		}
		if !strings.Contains(string(body), "goproxy-setup: ") || !strings.Contains(string(body), "fix: ") {
			t.Errorf("504 body %q lacks the diagnosis", body)
		}
		if st := h.Stats(); st.Failures != 1 {
			t.Errorf("stats %+v, want 1 failure", st)
		}
	})
}

// TestIdleBodyStall: an upstream that stops sending mid-body hits the
// idle-body timeout: a small body (not yet answered) gets 504, a large
// one (streaming) is aborted.
func TestIdleBodyStall(t *testing.T) {
	t.Parallel()
	m := newMTLS(t)
	ms := newModServer(t, testModules(1, 1200<<10))
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	ms.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		data, err := fsRead(ms, strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(200)
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		select {
		case <-stall:
		case <-r.Context().Done():
		}
		return true
	})
	srv := m.serve(t, ms)
	timeouts := upstream.Timeouts{Connect: 2 * time.Second, TLSHandshake: 2 * time.Second, ResponseHeader: 2 * time.Second, IdleBody: 300 * time.Millisecond}
	base, h := newAgent(t, m.newClient(t, srv.URL, clientOpts{timeouts: timeouts, retry: upstream.Retry{Attempts: 1}}), nil)

	code, body, err := fetch(t, http.DefaultClient, base+"/example.test/ma/@v/v1.0.0.zip")
	if err != nil || code != http.StatusGatewayTimeout || !strings.Contains(string(body), "stalled") {
		t.Errorf("small body stalled: %d %q %v, want 504 naming the stall", code, body, err)
	}
	code, body, err = fetch(t, http.DefaultClient, base+"/example.test/big/@v/v1.0.0.zip")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("large body stalled: %d %q %v, want the response aborted (unexpected EOF)", code, body, err)
	}
	// Both made a go command fail: the 504 and the aborted body count.
	if st := h.Stats(); st.BodyErrors != 1 || st.Failures != 2 || st.ErrorsByLayer["timeout"] != 2 {
		t.Errorf("stats %+v, want 2 failures (layer timeout), 1 of them a body error", st)
	}
}

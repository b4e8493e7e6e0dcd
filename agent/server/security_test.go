package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
	"github.com/goproxy-setup/goproxy-setup/policies"
)

// The test binary doubles as the local users' clients: TestMain dispatches
// on childEnv.
const childEnv = "GO_TEST_AGENT_CHILD"

// sharedBinary is a copy of the test binary every user can run (the build
// cache is root's); written before any test forks.
var sharedBinary string

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "get":
		os.Exit(getChild())
	case "attack":
		os.Exit(attackChild())
	}
	os.Exit(testenv.RunWithSharedBinary(m, &sharedBinary))
}

// getResult is what the "get" child prints.
type getResult struct {
	Codes []int  `json:"codes"`
	Body  string `json:"body"`
	Err   string `json:"err"`
}

// getChild GETs GO_TEST_URL GO_TEST_N times, each on a new connection.
func getChild() int {
	n, _ := strconv.Atoi(os.Getenv("GO_TEST_N"))
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var r getResult
	for i := 0; i < max(n, 1); i++ {
		resp, err := c.Get(os.Getenv("GO_TEST_URL"))
		if err != nil {
			r.Err = err.Error()
			break
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		r.Codes = append(r.Codes, resp.StatusCode)
		r.Body = string(b)
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// attackResult is what the "attack" child prints.
type attackResult struct {
	Opened int `json:"opened"`
	// Closed are connections the agent closed (or refused) while the
	// attacker dripped.
	Closed int `json:"closed"`
	// Held are connections still open at the end.
	Held int `json:"held"`
}

// attackChild opens GO_TEST_CONNS connections to GO_TEST_ADDR, a third
// each dripping a request header, dripping a chunked body to a wrong path,
// and idle; it drips one byte a second for GO_TEST_HOLD, then reports how
// many the agent closed. It prints "opened" once all are open.
func attackChild() int {
	addr := os.Getenv("GO_TEST_ADDR")
	n, _ := strconv.Atoi(os.Getenv("GO_TEST_CONNS"))
	hold, _ := time.ParseDuration(os.Getenv("GO_TEST_HOLD"))
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			continue
		}
		switch i % 3 {
		case 0:
			io.WriteString(c, "GET /wrong/@v/list HTTP/1.1\r\nHost: x\r\n")
		case 1:
			io.WriteString(c, "POST /wrong HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
		}
		conns = append(conns, c)
	}
	fmt.Println("opened")
	var closed atomic.Int64
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 512)
			deadline := time.Now().Add(hold)
			for time.Now().Before(deadline) {
				var err error
				switch i % 3 {
				case 0:
					_, err = io.WriteString(c, "X-Drip: a\r\n")
				case 1:
					_, err = io.WriteString(c, "1\r\na\r\n")
				}
				if err == nil {
					// A closed connection shows as EOF (or reset) here.
					c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
					for err == nil {
						_, err = c.Read(buf)
					}
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						continue
					}
				}
				closed.Add(1)
				return
			}
		}()
	}
	wg.Wait()
	json.NewEncoder(os.Stdout).Encode(attackResult{Opened: len(conns), Closed: int(closed.Load()), Held: len(conns) - int(closed.Load())})
	return 0
}

// asUser returns the test binary as a child in mode, running as uid:gid.
func asUser(uid, gid int, mode string, env ...string) *exec.Cmd {
	c := exec.Command(sharedBinary)
	c.Env = append([]string{childEnv + "=" + mode}, env...)
	c.Dir = "/"
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	return c
}

// getAs runs the "get" child as uid:gid.
func getAs(t *testing.T, uid, gid int, url string, n int) getResult {
	t.Helper()
	out, err := asUser(uid, gid, "get", "GO_TEST_URL="+url, "GO_TEST_N="+strconv.Itoa(n)).Output()
	if err != nil {
		t.Fatalf("client as uid %d: %v", uid, err)
	}
	var r getResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("client as uid %d: %q: %v", uid, out, err)
	}
	return r
}

// testUpstream is a module proxy on loopback that lists one version.
func testUpstream(t testing.TB) string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/example.com/m/@v/list" {
			io.WriteString(w, "v1.0.0\n")
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(up.Close)
	return up.URL
}

// serveTest runs Serve in-process and returns its base URL.
func serveTest(t testing.TB, cfg ServeConfig) string {
	t.Helper()
	if cfg.Token == "" {
		tok, err := proxy.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Token = tok
	}
	if cfg.Policy == nil {
		pol, err := policies.Resolve("", testUpstream(t), true)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Policy = pol
	}
	ctx, cancel := context.WithCancel(context.Background())
	base := make(chan string, 1)
	cfg.Ready = func(b string) { base <- b }
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case b := <-base:
		return b
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	return ""
}

// TestPeerCheck: with the correct capability token, another local user is
// refused with a one-line 403 while the job's user and root are served.
func TestPeerCheck(t *testing.T) {
	t.Parallel()
	_, jobUID, jobGID := testenv.LocalUser(t, "gpsa")
	_, otherUID, otherGID := testenv.LocalUser(t, "gpsa")
	base := serveTest(t, ServeConfig{PeerCheck: true, JobUID: jobUID})
	url := base + "/example.com/m/@v/list"

	if r := getAs(t, jobUID, jobGID, url, 2); r.Err != "" || len(r.Codes) != 2 || r.Codes[0] != 200 || r.Body != "v1.0.0\n" {
		t.Errorf("job user (uid %d): got %+v, want 200 v1.0.0 twice", jobUID, r)
	}
	r := getAs(t, otherUID, otherGID, url, 1)
	if r.Err != "" || len(r.Codes) != 1 || r.Codes[0] != http.StatusForbidden {
		t.Fatalf("other user (uid %d) with the token: got %+v, want 403", otherUID, r)
	}
	if want := fmt.Sprintf("uid %d may not use this agent", otherUID); !strings.Contains(r.Body, want) || strings.Count(strings.TrimSpace(r.Body), "\n") != 0 {
		t.Errorf("403 body %q: want one line containing %q", r.Body, want)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("root: status %d, want 200", resp.StatusCode)
	}
}

// TestPeerCheckFallback: where neither sock_diag nor /proc/net/tcp can be
// used the agent
// serves on the token alone and says so once in its log. Not parallel: it
// turns sock_diag off and points /proc at a missing file.
func TestPeerCheckFallback(t *testing.T) {
	_, otherUID, otherGID := testenv.LocalUser(t, "gpsa")
	old, oldDiag := procNetTCP, useSockDiag
	procNetTCP, useSockDiag = "/nonexistent/proc/net/tcp", false
	defer func() { procNetTCP, useSockDiag = old, oldDiag }()
	var logBuf testenv.SyncBuffer
	base := serveTest(t, ServeConfig{PeerCheck: true, JobUID: 0, Logger: hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Info})})
	if r := getAs(t, otherUID, otherGID, base+"/example.com/m/@v/list", 3); r.Err != "" || len(r.Codes) != 3 || r.Codes[2] != 200 {
		t.Errorf("other user without the peer lookup: got %+v, want 200 (token only)", r)
	}
	if n := strings.Count(logBuf.String(), "peer check unavailable"); n != 1 {
		t.Errorf("log says %d times that the peer check is unavailable, want once:\n%s", n, logBuf.String())
	}
}

// TestRequestBodyRefusedUndrained: a body (here chunked, dripping, to a
// wrong path) is answered 413 at once and the connection closed, without
// the server waiting for the body.
func TestRequestBodyRefusedUndrained(t *testing.T) {
	t.Parallel()
	base := serveTest(t, ServeConfig{})
	addr := strings.TrimPrefix(base, "http://")
	addr = addr[:strings.IndexByte(addr, '/')]
	for _, req := range []string{
		"POST /wrong HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
		"GET /wrong HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, req)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: no answer while the body is pending: %v", req, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%q: status %d, want 413", req, resp.StatusCode)
		}
		// The agent closes rather than drains: EOF well before the read
		// deadline although the body never ends.
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("%q: after the answer read %v, want EOF (connection closed, body not drained)", req, err)
		}
		c.Close()
	}
}

// TestConnectionFloodByAnotherUser: another local user opens a few hundred
// connections that drip headers or a chunked body, or stay idle, against
// lowered caps; the agent holds at most the per-peer cap of them, its
// descriptors stay bounded, and the job's requests all succeed meanwhile.
func TestConnectionFloodByAnotherUser(t *testing.T) {
	t.Parallel()
	_, jobUID, jobGID := testenv.LocalUser(t, "gpsa")
	_, atkUID, atkGID := testenv.LocalUser(t, "gpsa")
	limits := ConnLimits{Owner: 64, PerPeer: 8, Others: 16}
	base := serveTest(t, ServeConfig{PeerCheck: true, JobUID: jobUID, Limits: limits})
	addr := strings.TrimPrefix(base, "http://")
	addr = addr[:strings.IndexByte(addr, '/')]
	fdsBefore := openFDs(t)

	const conns = 300
	atk := asUser(atkUID, atkGID, "attack", "GO_TEST_ADDR="+addr, "GO_TEST_CONNS="+strconv.Itoa(conns), "GO_TEST_HOLD=4s")
	stdout, err := atk.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := atk.Start(); err != nil {
		t.Fatal(err)
	}
	defer atk.Process.Kill()
	br := bufio.NewReader(stdout)
	if line, err := br.ReadString('\n'); err != nil || line != "opened\n" {
		t.Fatalf("attacker: %q %v", line, err)
	}
	// Let the agent identify and close the excess connections; then the
	// descriptors it holds are what it kept.
	var series []int
	for i := 0; i < 15; i++ {
		time.Sleep(100 * time.Millisecond)
		series = append(series, openFDs(t))
	}
	fdsDuring := series[len(series)-1]
	t.Logf("descriptors while flooded: %v", series)
	r := getAs(t, jobUID, jobGID, base+"/example.com/m/@v/list", 20)
	var res attackResult
	if err := json.NewDecoder(br).Decode(&res); err != nil {
		t.Fatalf("attacker result: %v", err)
	}
	atk.Wait()
	if r.Err != "" || len(r.Codes) != 20 {
		t.Fatalf("job user during the flood: %+v, want 20 answers", r)
	}
	for i, c := range r.Codes {
		if c != 200 {
			t.Errorf("job request %d during the flood: status %d, want 200", i, c)
		}
	}
	if res.Opened < conns/2 {
		t.Errorf("attacker opened %d of %d connections: the flood did not happen", res.Opened, conns)
	}
	if res.Held > limits.PerPeer {
		t.Errorf("attacker held %d connections to the end, want at most the per-peer cap %d", res.Held, limits.PerPeer)
	}
	// The agent's descriptors: the connections it holds, not the flood.
	if grew := fdsDuring - fdsBefore; grew > limits.PerPeer+32 {
		t.Errorf("descriptors grew by %d during a flood of %d, want at most about the per-peer cap %d", grew, res.Opened, limits.PerPeer)
	}
	t.Logf("attacker opened %d, agent closed %d, held %d to the end; descriptors %d -> %d", res.Opened, res.Closed, res.Held, fdsBefore, fdsDuring)
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

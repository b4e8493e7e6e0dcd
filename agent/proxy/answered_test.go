package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/agent/diagnose"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// testClassify is diagnose.Classify with the contract of Config.Classify
// for answered errors: no hint (server.Classifier adds the ones a status
// implies, tested in package agent).
func testClassify(err error) (string, string) {
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Answered() {
		return diagnose.LayerHTTP, ""
	}
	return diagnose.Classify(err)
}

// answer makes ms answer status with body (as contentType) for every path
// under prefix.
func answer(ms *modServer, prefix string, status int, contentType, body string) {
	ms.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/"+prefix) {
			return false
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		io.WriteString(w, body)
		return true
	})
}

// TestAnsweredRelayed: an error status the upstream answered reaches
// cmd/go with the upstream's status and text, bounded and sanitised, one
// line naming the upstream, no network diagnosis; it is not counted as a
// failure. A TLS front's refusal of the client certificate stays a 502.
func TestAnsweredRelayed(t *testing.T) {
	t.Parallel()
	const canary = "CANARYt0ken1CANARYt0ken2CANARYt0ken3"
	for _, test := range []struct {
		name        string
		status      int
		contentType string
		body        string
		wantStatus  int
		want        []string // in the body, in order
		notWant     []string
		answered    int64
		failures    int64
		notFound    int64
	}{
		{
			name: "403 with text", status: 403, contentType: "text/plain; charset=utf-8",
			body:       "This module version is not available.\n",
			wantStatus: 403, want: []string{"This module version is not available.\ngoproxy-setup: https://127.0.0.1:", " answered 403 Forbidden\n"},
			answered: 1,
		},
		{
			name: "400 with text", status: 400, contentType: "text/plain",
			body:       "Go module host not permitted\n",
			wantStatus: 400, want: []string{"Go module host not permitted\n", "answered 400 Bad Request"},
			answered: 1,
		},
		{
			name: "403 as an HTML page", status: 403, contentType: "text/html",
			body:       "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
			wantStatus: 403, want: []string{"403 Forbidden\nnginx\n"}, notWant: []string{"<", "\n\n"},
			answered: 1,
		},
		{
			name: "403 as Artifactory JSON", status: 403, contentType: "application/json",
			body:       `{"errors":[{"status":403,"message":"Download request for repo:path 'go-remote:example.test/ma' is forbidden for user: 'anonymous'."}]}`,
			wantStatus: 403, want: []string{"is forbidden for user: 'anonymous'.\n"}, notWant: []string{"{"},
			answered: 1,
		},
		{
			name: "secrets, control characters and blank lines", status: 401, contentType: "text/plain",
			body:       "denied\x1b[31m for https://user:" + canary + "@proxy.corp/" + canary + "/x\n\n\nBearer " + canary + "\nline3\nline4\nline5\nline6\nline7\nline8\nline9\n",
			wantStatus: 401, want: []string{"denied [31m for https://REDACTED@proxy.corp/REDACTED/x\nBearer REDACTED\n"},
			notWant:  []string{canary, "\x1b", "\n\n", "line6"},
			answered: 1,
		},
		{
			name: "404 passes through", status: 404, contentType: "text/plain",
			body:       "not found: example.test/ma@v1.0.0: invalid version\n",
			wantStatus: 404, want: []string{"not found: example.test/ma@v1.0.0: invalid version\n"}, notWant: []string{"goproxy-setup"},
			notFound: 1,
		},
		{
			name: "nginx refuses the client certificate", status: 400, contentType: "text/html",
			body:       "<html><head><title>400 No required SSL certificate was sent</title></head><body><center><h1>400 Bad Request</h1></center><center>No required SSL certificate was sent</center></body></html>",
			wantStatus: 502, want: []string{"goproxy-setup: http failure at https://127.0.0.1:", "fix: "},
			failures: 1,
		},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			m := newMTLS(t)
			ms := newModServer(t, testModules(1, 0))
			answer(ms, "example.test/ma/", test.status, test.contentType, test.body)
			srv := m.serve(t, ms)
			h, err := New(Config{Token: testToken, Upstream: m.newClient(t, srv.URL, clientOpts{}), Classify: testClassify})
			if err != nil {
				t.Fatal(err)
			}
			agent := httptest.NewServer(h)
			t.Cleanup(agent.Close)
			resp, err := http.Get(agent.URL + "/" + testToken + "/example.test/ma/@v/v1.0.0.info")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body := string(b)
			if resp.StatusCode != test.wantStatus {
				t.Errorf("status %d, want %d; body:\n%s", resp.StatusCode, test.wantStatus, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want text/plain (cmd/go prints only such a body)", ct)
			}
			rest := body
			for _, w := range test.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("body lacks %q (in order):\n%s", w, body)
					break
				}
				rest = rest[i+len(w):]
			}
			for _, nw := range append(test.notWant, "diagnose") {
				if test.wantStatus < 500 && strings.Contains(body, nw) {
					t.Errorf("body holds %q:\n%s", nw, body)
				}
			}
			if n := strings.Count(body, "\n"); n > 8 || len(body) > 648 {
				t.Errorf("body of %d lines, %d bytes: more than cmd/go prints", n, len(body))
			}
			st := h.Stats()
			if st.Answered != test.answered || st.Failures != test.failures || st.NotFound != test.notFound {
				t.Errorf("stats answered %d, failures %d, not found %d; want %d, %d, %d", st.Answered, st.Failures, st.NotFound, test.answered, test.failures, test.notFound)
			}
		})
	}
}

// TestAnsweredKind: the upstream client marks an answered 4xx Answered,
// a 5xx Unreachable.
func TestAnsweredKind(t *testing.T) {
	t.Parallel()
	m := newMTLS(t)
	ms := newModServer(t, testModules(1, 0))
	ms.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.HasPrefix(r.URL.Path, "/forbidden/"):
			http.Error(w, "no", http.StatusForbidden)
		case strings.HasPrefix(r.URL.Path, "/gone/"):
			http.Error(w, "gone", http.StatusGone)
		case strings.HasPrefix(r.URL.Path, "/broken/"):
			http.Error(w, "oops", http.StatusInternalServerError)
		default:
			return false
		}
		return true
	})
	c := m.newClient(t, m.serve(t, ms).URL, clientOpts{})
	for path, want := range map[string]errkind.Kind{
		"forbidden/@v/list": errkind.Answered,
		"gone/@v/list":      errkind.Answered,
		"broken/@v/list":    errkind.Unreachable,
	} {
		_, err := c.Get(context.Background(), path)
		if got := errkind.Of(err); got != want {
			t.Errorf("Get(%s): kind %v (%v), want %v", path, got, err, want)
		}
	}
}

// TestAnsweredGoCommand runs the real go command against an upstream that
// answers 403 with a text for chosen paths, once straight to the upstream
// and once through the agent: through the agent, cmd/go prints the same
// text, blames no identity and suggests no network diagnosis; and cmd/go's
// routine module-path prefix probes answered 403 leave a green go get
// green and count as no failure.
func TestAnsweredGoCommand(t *testing.T) {
	t.Parallel()
	mods := []testenv.Module{{Path: "example.test/ok/lib", Version: "v1.0.0"}, {Path: "example.test/denied", Version: "v1.0.0"}}
	ms := newModServer(t, mods)
	const text = "This module version is not available."
	ms.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		// The denied module, and the prefixes cmd/go probes for
		// example.test/ok/lib (example.test, example.test/ok).
		if strings.HasPrefix(r.URL.Path, "/example.test/denied/") || regexp.MustCompile(`^/example\.test(/ok)?/@v/`).MatchString(r.URL.Path) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, text+"\n")
			return true
		}
		return false
	})
	srv := httptest.NewServer(ms)
	t.Cleanup(srv.Close)
	base, h := newAgentWith(t, newPlainClient(t, srv.URL))

	goGet := func(proxy, mod string) (string, error) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module consumer\n\ngo 1.21\n"), 0o644)
		env := append(testenv.GoEnv(t, t.TempDir()), "GOPROXY="+proxy)
		return testenv.RunGo(t, dir, env, "get", mod)
	}
	direct, derr := goGet(srv.URL, "example.test/denied@v1.0.0")
	via, verr := goGet(base, "example.test/denied@v1.0.0")
	if derr == nil || verr == nil {
		t.Fatalf("go get of a denied module succeeded (direct: %v, agent: %v)\n%s\n%s", derr, verr, direct, via)
	}
	if !strings.Contains(testenv.ServerResponse(direct), text) {
		t.Fatalf("direct, cmd/go does not print the upstream's text: the test proves nothing\n%s", direct)
	}
	if got := testenv.ServerResponse(via); !strings.Contains(got, text) {
		t.Errorf("through the agent cmd/go prints server response %q, want the upstream's text %q\nfull output:\n%s", got, text, via)
	}
	if !strings.Contains(via, "403 Forbidden") {
		t.Errorf("through the agent cmd/go does not print the upstream's status:\n%s", via)
	}
	for _, bad := range []string{"diagnose", "identity", "failure"} {
		if strings.Contains(via, bad) {
			t.Errorf("through the agent cmd/go prints %q:\n%s", bad, via)
		}
	}
	// A status, not digits of a port: a CI run failed on 127.0.0.1:45025.
	if regexp.MustCompile(`\b502\b`).MatchString(via) {
		t.Errorf("through the agent cmd/go prints 502:\n%s", via)
	}

	before := h.Stats().Answered
	if out, err := goGet(base, "example.test/ok/lib@v1.0.0"); err != nil {
		t.Fatalf("go get with 403 prefix probes through the agent: %v\n%s", err, out)
	}
	st := h.Stats()
	if st.Answered == before {
		t.Fatalf("no prefix probe was answered 403 (stats %+v): the test proves nothing", st)
	}
	if st.Failures != 0 {
		t.Errorf("a green go get counted %d failures (by layer %v), want 0", st.Failures, st.ErrorsByLayer)
	}
}

// newPlainClient is an upstream client for a plain-HTTP upstream.
func newPlainClient(t *testing.T, list string) *upstream.Client {
	t.Helper()
	entries, err := upstream.ParseList(list)
	if err != nil {
		t.Fatal(err)
	}
	c := upstream.New(upstream.Options{Entries: entries, Transport: upstream.NewTransport(upstream.TransportOptions{Timeouts: upstream.DefaultTimeouts(0), Retry: upstream.Retry{Attempts: 1}})})
	t.Cleanup(func() { c.Close() })
	return c
}

// newAgentWith serves a forwarder over up with testClassify.
func newAgentWith(t *testing.T, up Fetcher) (string, *Handler) {
	t.Helper()
	h, err := New(Config{Token: testToken, Upstream: up, Classify: testClassify})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/" + testToken, h
}

// localFetcher fails every request with a limit of this machine.
type localFetcher struct{}

func (localFetcher) Get(context.Context, string) (*http.Response, error) {
	return nil, errkind.Mark(errkind.Local, &upstream.Error{Upstream: "https://proxy.test", URL: "https://proxy.test/m/@v/list", Err: os.NewSyscallError("socket", syscall.EMFILE)})
}

// TestLocalFaultNotDiagnosed: a limit of the agent's machine is answered
// 502 naming it, and starts no network diagnosis.
func TestLocalFaultNotDiagnosed(t *testing.T) {
	t.Parallel()
	var diagnosed atomic.Bool
	h, err := New(Config{Token: testToken, Upstream: localFetcher{}, Classify: testClassify, Diagnose: func(context.Context, string) string {
		diagnosed.Store(true)
		return "diagnosis: 7 checks ok"
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	code, body, err := fetch(t, http.DefaultClient, srv.URL+"/"+testToken+"/m.test/x/@v/list")
	if err != nil || code != http.StatusBadGateway || !strings.Contains(string(body), "goproxy-setup: local failure") || !strings.Contains(string(body), "ulimit") {
		t.Errorf("got %d %q %v, want a 502 naming the local fault and its fix", code, body, err)
	}
	if diagnosed.Load() || strings.Contains(string(body), "diagnosis") {
		t.Errorf("a local fault started a network diagnosis: %q", body)
	}
	if st := h.Stats(); st.ErrorsByLayer["local"] != 1 {
		t.Errorf("errors by layer %v, want local: 1", st.ErrorsByLayer)
	}
}

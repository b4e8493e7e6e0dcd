package proxy

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/faultproxy"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// TestGoThroughFaults runs the real go command through the agent against
// an mTLS upstream that breaks every file once (all at once, as one
// network event would), and the go command straight to the same faulty
// upstream beside it. Through the agent every fault the agent can mend
// leaves `go mod download` green and the cache verified; where the
// upstream gives nothing to validate a continuation with, the streamed zip
// fails precisely and nothing corrupt is cached. Direct, cmd/go fails.
func TestGoThroughFaults(t *testing.T) {
	t.Parallel()
	// Three small zips (held in the flight buffer) and one of 1.2 MB
	// (streamed to cmd/go as it arrives).
	mods := testModules(3, 1200<<10)
	const big = "example.test/big"
	zips := func(p string) bool { return strings.HasSuffix(p, ".zip") }
	notZips := func(p string) bool { return strings.HasSuffix(p, ".mod") || strings.HasSuffix(p, ".info") }
	every := func(string) bool { return true }
	cases := []struct {
		name   string
		opts   faultproxy.Options
		h2     bool
		direct string // what cmd/go straight to the upstream prints; "" when it is not run
		// wantFail is what the go command prints through the agent when
		// the fault cannot be mended ("": success).
		wantFail    string
		wantResumes bool
	}{
		{name: "cut", opts: faultproxy.Options{Fault: faultproxy.Cut, Match: zips}, direct: "unexpected EOF", wantResumes: true},
		{name: "HTTP/2 stream reset", opts: faultproxy.Options{Fault: faultproxy.Cut, Match: zips}, h2: true, wantResumes: true},
		{name: "stall", opts: faultproxy.Options{Fault: faultproxy.Stall, Match: zips, StallFor: 3 * time.Second}, direct: "unexpected EOF", wantResumes: true},
		{name: "cut .mod and .info", opts: faultproxy.Options{Fault: faultproxy.Cut, Match: notZips}, direct: "unexpected EOF"},
		{name: "reset", opts: faultproxy.Options{Fault: faultproxy.Reset, Match: every}, direct: "connection reset"},
		{name: "503", opts: faultproxy.Options{Fault: faultproxy.Unavailable, Match: every}, direct: "503 Service Unavailable"},
		{name: "no Range support", opts: faultproxy.Options{Fault: faultproxy.Cut, Match: zips, NoRange: true}, wantFail: "unexpected EOF"},
		{name: "ETag changed", opts: faultproxy.Options{Fault: faultproxy.Cut, Match: zips, ChangingETag: true}, wantFail: "unexpected EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			testenv.WriteProxyDir(t, dir, mods)
			consumer := t.TempDir()
			testenv.WriteConsumer(t, consumer, mods)

			// Through the agent.
			fh := faultproxy.New(os.DirFS(dir), tc.opts)
			t.Cleanup(fh.Close)
			m := newMTLS(t)
			srv := m.serveProto(t, fh, tc.h2)
			timeouts := upstream.Timeouts{Connect: 5 * time.Second, TLSHandshake: 5 * time.Second, ResponseHeader: 10 * time.Second, IdleBody: 300 * time.Millisecond}
			c := m.newClient(t, srv.URL, clientOpts{timeouts: timeouts, breaker: upstream.Breaker{Failures: 5, Cooldown: 30 * time.Second}})
			base, h := newAgent(t, c, nil)
			modcache := t.TempDir()
			env := append(testenv.GoEnv(t, modcache), "GOPROXY="+base)
			out, err := testenv.RunGo(t, consumer, env, "mod", "download")
			if fh.Counts().Faults == 0 {
				t.Fatalf("no fault was injected: the case proves nothing")
			}
			st, health := h.Stats(), c.Health()[0]
			// What status --json and the reports show.
			if len(st.Upstreams) != 1 || st.Upstreams[0].Counters != health.Counters {
				t.Errorf("agent stats upstreams %+v, want the client's %+v", st.Upstreams, health)
			}
			if tc.wantFail == "" {
				if err != nil {
					t.Fatalf("go mod download through the agent, %s once per file: %v\n%s\nagent stats %+v\nupstream %+v", tc.name, err, out, st, health)
				}
				if out, err := testenv.RunGo(t, consumer, testenv.GoEnv(t, modcache), "mod", "verify"); err != nil {
					t.Fatalf("go mod verify: %v\n%s", err, out)
				}
				if st.Failures != 0 || st.BodyErrors != 0 {
					t.Errorf("agent stats %+v, want no failure", st)
				}
				if health.State != "closed" {
					t.Errorf("circuit %+v, want closed after one fault per file", health)
				}
				if tc.wantResumes && (health.Resumes == 0 || health.ResumedBytes == 0) {
					t.Errorf("upstream counters %+v, want resumes", health.Counters)
				}
			} else {
				if err == nil {
					t.Fatalf("go mod download succeeded through the agent with %s: the fault proves nothing\n%s", tc.name, out)
				}
				if !strings.Contains(out, big) || !strings.Contains(out, tc.wantFail) {
					t.Errorf("go mod download failed for another reason than the unresumable %s zip (want %q):\n%s", big, tc.wantFail, out)
				}
				for _, p := range []string{"cache/download/" + big + "/@v/v1.0.0.zip", big + "@v1.0.0"} {
					if _, err := os.Stat(filepath.Join(modcache, p)); err == nil {
						t.Errorf("module cache holds %s after an unresumable cut", p)
					}
				}
				if st.BodyErrors != 1 || health.ResumeFailures == 0 || health.Resumes != 0 {
					t.Errorf("agent stats %+v, upstream %+v: want 1 aborted body, a resume failure and no resume", st, health)
				}
			}

			// Beside it, cmd/go straight to the same faulty upstream
			// (plain HTTP: cmd/go has no client certificate).
			if tc.direct == "" {
				return
			}
			dfh := faultproxy.New(os.DirFS(dir), tc.opts)
			t.Cleanup(dfh.Close)
			dsrv := httptest.NewServer(dfh)
			t.Cleanup(dsrv.Close)
			denv := append(testenv.GoEnv(t, t.TempDir()), "GOPROXY="+dsrv.URL)
			dout, err := testenv.RunGo(t, consumer, denv, "mod", "download")
			if err == nil || !strings.Contains(dout, tc.direct) {
				t.Errorf("go mod download straight to the upstream with %s: %v, want a failure naming %q:\n%s", tc.name, err, tc.direct, dout)
			}
		})
	}
}

package proxy

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// killAfter makes srv die (listener closed, connections dropped) while it
// serves its n+1st request, which it aborts: the primary is killed in
// the middle of a build.
func killAfter(srv *httptest.Server, ms *modServer, n int64) *atomic.Bool {
	var seen atomic.Int64
	var dead atomic.Bool
	var once sync.Once
	ms.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if seen.Add(1) <= n {
			return false
		}
		once.Do(func() {
			dead.Store(true)
			srv.Listener.Close()
			go srv.CloseClientConnections()
		})
		panic(http.ErrAbortHandler)
	})
	return &dead
}

func TestFailoverGoBuild(t *testing.T) {
	t.Parallel()
	mods := testModules(6, 0)
	cases := []struct {
		name    string
		sep     string
		wantErr bool
	}{
		{"pipe fails over", "|", false},
		{"comma fails like cmd/go", ",", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newMTLS(t)
			primary, secondary := newModServer(t, mods), newModServer(t, mods)
			ps := m.serve(t, primary)
			ps.Config.ErrorLog = log.New(io.Discard, "", 0)
			ss := m.serve(t, secondary)
			dead := killAfter(ps, primary, 4)
			c := m.newClient(t, ps.URL+tc.sep+ss.URL, clientOpts{
				retry:   upstream.Retry{Attempts: 2, Backoff: 10 * time.Millisecond},
				breaker: upstream.Breaker{Failures: 2, Cooldown: time.Minute},
			})
			base, h := newAgent(t, c, nil)

			dir := t.TempDir()
			testenv.WriteConsumer(t, dir, mods)
			env := append(testenv.GoEnv(t, t.TempDir()), "GOPROXY="+base)
			out, err := testenv.RunGo(t, dir, env, "build", "-o", t.TempDir()+"/consumer", ".")
			if !dead.Load() {
				t.Fatalf("the primary was never killed (served %d requests): the test proves nothing", primary.all.Load())
			}
			st := h.Stats()
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("go build through the agent with the primary killed: %v\n%s", err, out)
				}
				if st.Failures != 0 || st.BodyErrors != 0 {
					t.Errorf("agent answered %d failures, %d broken bodies; want none (zero failed go commands)", st.Failures, st.BodyErrors)
				}
				if secondary.all.Load() == 0 {
					t.Errorf("the secondary served nothing")
				}
				if h := c.Health(); h[0].State != "open" {
					t.Errorf("primary circuit %s, want open", h[0].State)
				}
				return
			}
			if err == nil {
				t.Fatalf("go build succeeded with ',' and a dead primary:\n%s", out)
			}
			t.Logf("go build output with ',':\n%s", out)
			if secondary.all.Load() != 0 {
				t.Errorf("',' consulted the secondary %d times after a failure that is not 404/410", secondary.all.Load())
			}
			// cmd/go prints the agent's diagnosis under "server response:".
			if !strings.Contains(out, "server response:") || !strings.Contains(out, "goproxy-setup: ") || !strings.Contains(out, ps.URL) || !strings.Contains(out, "fix: ") {
				t.Errorf("go output lacks the agent's diagnosis naming the upstream %s:\n%s", ps.URL, out)
			}
			if st.Failures == 0 {
				t.Errorf("agent stats show no failure")
			}
		})
	}
}

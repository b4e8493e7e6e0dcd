package proxy

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// TestLoad runs 64 concurrent `go mod download`-like clients (list, .info,
// .mod, .zip of a set of modules) through the agent for a few seconds and
// asserts zero errors. Timing is reported, never asserted (see
// cmd/goproxy-bench agent for the 60 s run).
func TestLoad(t *testing.T) {
	t.Parallel()
	const clients = 64
	duration := 3 * time.Second
	var mods []testenv.Module
	for i := range 16 {
		mods = append(mods, testenv.Module{Path: fmt.Sprintf("example.test/load%02d", i), Version: "v1.0.0"})
	}
	m := newMTLS(t)
	ms := newModServer(t, mods)
	srv := m.serve(t, ms)
	base, h := newAgent(t, m.newClient(t, srv.URL, clientOpts{}), nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	t.Cleanup(client.CloseIdleConnections)

	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs []string
		wg   sync.WaitGroup
	)
	stop := time.Now().Add(duration)
	for c := range clients {
		wg.Go(func() {
			var mine []time.Duration
			for i := c; time.Now().Before(stop); i++ {
				mod := mods[i%len(mods)].Path
				for _, file := range []string{"@v/list", "@v/v1.0.0.info", "@v/v1.0.0.mod", "@v/v1.0.0.zip"} {
					p := mod + "/" + file
					start := time.Now()
					code, body, err := fetch(t, client, base+"/"+p)
					mine = append(mine, time.Since(start))
					want, _ := fsRead(ms, p)
					if err != nil || code != 200 || string(body) != string(want) {
						mu.Lock()
						errs = append(errs, fmt.Sprintf("%s: %d %v", p, code, err))
						mu.Unlock()
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Errorf("%d of %d requests failed, e.g. %s", len(errs), len(lat), errs[0])
	}
	st := h.Stats()
	if st.Failures != 0 || st.BodyErrors != 0 || st.Cancelled != 0 {
		t.Errorf("agent stats %+v: want no failures", st)
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Fatal("no request made")
	}
	t.Logf("%d requests by %d clients in %s (%.0f req/s, race detector and test servers included): p50 %s, p99 %s; %d shared fetches",
		len(lat), clients, duration, float64(len(lat))/duration.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100], st.Shared)
}

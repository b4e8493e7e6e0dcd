package server

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
)

// TestSnapshotter: the stats file follows the stats as they change (the
// uptime alone is no change), is written atomically as JSON the supervisor
// reads back, and stops following when the agent stops.
func TestSnapshotter(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	st := proxy.Stats{Uptime: "1s", Requests: 1}
	stats := func() proxy.Stats {
		mu.Lock()
		defer mu.Unlock()
		st.Uptime += "1" // changes on every call, as the real one does
		return st
	}
	path := filepath.Join(t.TempDir(), "stats.json")
	s := &snapshotter{path: path, stats: stats, log: hclog.NewNullLogger()}
	read := func() proxy.Stats {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var got proxy.Stats
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("snapshot %q: %v", b, err)
		}
		if strings.Contains(string(b), `"uptime":"1`) {
			t.Errorf("snapshot %s holds the uptime", b)
		}
		return got
	}
	s.write()
	if got := read(); got.Requests != 1 {
		t.Fatalf("snapshot requests = %d, want 1", got.Requests)
	}
	fi1, _ := os.Stat(path)
	s.write() // only the uptime changed: no rewrite
	if fi2, _ := os.Stat(path); !os.SameFile(fi1, fi2) {
		t.Errorf("the snapshot was rewritten although only the uptime changed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	mu.Lock()
	st.Requests, st.Failures = 7, 2
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for read().Requests != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot requests = %d after 10 s, want 7", read().Requests)
		}
		time.Sleep(snapshotEvery / 2)
	}
	if got := read(); got.Failures != 2 {
		t.Errorf("snapshot failures = %d, want 2", got.Failures)
	}
	cancel()
	<-done
}

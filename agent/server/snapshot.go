package server

import (
	"context"
	"encoding/json"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
)

// snapshotEvery is how often the agent looks for changed stats to write to
// its stats file: the snapshot lags the live stats by at most this much.
const snapshotEvery = 250 * time.Millisecond

// snapshotter keeps a secret-free copy of the agent's stats in a file
// (proxy.Stats as the stats endpoint serves it: counts, bytes, latencies,
// error layers; no token, URL path or key), for a report step that runs
// where the agent no longer is: GitLab's docker executor runs after_script
// in a new container from the job image, sharing only the build directory,
// and the agent ended with the script's container. The file is rewritten
// atomically whenever the stats change, and once more when the agent stops.
type snapshotter struct {
	path  string
	stats func() proxy.Stats
	log   hclog.Logger
	last  []byte
}

// write writes the stats when they changed since the last write.
func (s *snapshotter) write() {
	st := s.stats()
	st.Uptime = "" // changes on every call; the file's mtime says when
	b, err := json.Marshal(st)
	if err != nil || string(b) == string(s.last) {
		return
	}
	if err := atomicfile.WriteFile(s.path, b, 0o644); err != nil {
		s.log.Warn("could not write the stats snapshot", "path", s.path, "error", err)
		return
	}
	s.last = b
}

// run writes changed stats every snapshotEvery until ctx is done.
func (s *snapshotter) run(ctx context.Context) {
	t := time.NewTicker(snapshotEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.write()
		}
	}
}

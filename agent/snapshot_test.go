package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/ci"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// TestReportFromSnapshot: where the report step runs without the agent
// (GitLab's docker executor runs after_script in a new container, so the
// state dir in /tmp is gone, or it is there with its agent dead), the
// report publishes the agent's last stats from its snapshot, says so, counts
// only failures after setup, and removes the snapshot; with neither it says
// there was no agent.
func TestReportFromSnapshot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		snapshot string // stats.json; "" for none
		setup    string // setup.json; "" for none
		wants    []string
		wantKind errkind.Kind // of the error, when not nilErr
		nilErr   bool
	}{
		{
			name:     "ok",
			snapshot: `{"requests":6,"bytes":1200,"failures":0}`,
			setup:    `{"setup_failures":0}`,
			wants:    []string{"the agent had ended before this report step", "requests: 6", "No fetch failed after setup."},
			nilErr:   true,
		},
		{
			name:     "failed after setup",
			snapshot: `{"requests":9,"bytes":1200,"failures":3,"errors_by_layer":{"tcp":3}}`,
			setup:    `{"setup_failures":1}`,
			wants:    []string{"the agent had ended before this report step", "FAILED: 2 fetches failed after setup", "errors at tcp (whole job): 3"},
			wantKind: errkind.Unreachable,
		},
		{
			name:   "no agent, no snapshot",
			wants:  []string{"no agent to report on"},
			nilErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			statsFile := filepath.Join(t.TempDir(), "goproxy-setup-7", "stats.json")
			if tc.snapshot != "" {
				if err := os.MkdirAll(filepath.Dir(statsFile), 0o700); err != nil {
					t.Fatal(err)
				}
				os.WriteFile(statsFile, []byte(tc.snapshot), 0o644)
				if tc.setup != "" {
					os.WriteFile(filepath.Join(filepath.Dir(statsFile), setupFile), []byte(tc.setup), 0o644)
				}
			}
			var log bytes.Buffer
			gl := ci.NewGitLab(ci.GitLabConfig{Log: &log, Now: func() time.Time { return time.Unix(0, 0) }})
			// The state dir of a new container: absent.
			err := ReportFrontEnd(context.Background(), gl, filepath.Join(t.TempDir(), "state"), statsFile)
			if tc.nilErr != (err == nil) {
				t.Fatalf("ReportFrontEnd = %v, want nil %v\n%s", err, tc.nilErr, log.String())
			}
			if err != nil && errkind.Of(err) != tc.wantKind {
				t.Errorf("error kind = %v, want %v", errkind.Of(err), tc.wantKind)
			}
			for _, w := range tc.wants {
				if !strings.Contains(log.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, log.String())
				}
			}
			if _, err := os.Stat(filepath.Dir(statsFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the snapshot's directory is still there after the report (stat: %v)", err)
			}
		})
	}
}

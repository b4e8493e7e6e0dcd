package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/privilege"
	"github.com/goproxy-setup/goproxy-setup/agent/supervisor"
	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
)

// The stats snapshot: where the report step runs without the agent (GitLab's
// docker executor runs after_script in a new container from the job image,
// sharing only the build directory; the agent ended with the script's
// container), the agent's final stats come from a file the agent keeps
// (agent/server's snapshotter: the stats endpoint's JSON, secret-free) in a
// directory of the build volume, next to setupFile, which the setup writes
// once setup is done (the failure count that setup itself saw). Neither
// holds the token, a URL path or key material.

// setupFile is the name, beside the stats file, of the setup's mark.
const setupFile = "setup.json"

// setupMark is what setupFile holds.
type setupMark struct {
	SetupFailures int64 `json:"setup_failures"`
}

// prepareStatsDir makes the stats file's directory writable by the agent:
// owned by the agent user (0700) when the agent runs as one under root, the
// caller's own (0700) when unseparated. Under sudo the caller cannot give
// the agent user a directory, and there the agent outlives the script
// anyway (a host runner): it returns false, and the agent keeps no
// snapshot.
func prepareStatsDir(dir string, sep separation) (bool, error) {
	switch {
	case sep.user == "":
		return true, os.MkdirAll(dir, 0o700)
	case sep.sudo:
		return false, nil
	}
	u, err := privilege.LookupUser(sep.user)
	if err != nil {
		return false, err
	}
	return true, privilege.PrepareDir(dir, u)
}

// markSetupDone records, beside the stats file, the failure count the
// agent had when setup finished (from its state), so a report from the
// snapshot counts only failures of the job's own steps.
func markSetupDone(statsFile string, d *supervisor.StateDir) error {
	st, err := d.ReadState()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(setupMark{SetupFailures: st.SetupFailures})
	return atomicfile.WriteFile(filepath.Join(filepath.Dir(statsFile), setupFile), b, 0o644)
}

// readSnapshot reads the agent's last stats from statsFile; ok is false
// when there is none.
func readSnapshot(statsFile string) (s *supervisor.Stats, written time.Time, ok bool, err error) {
	if statsFile == "" {
		return nil, time.Time{}, false, nil
	}
	fi, err := os.Stat(statsFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, time.Time{}, false, nil
	}
	if err != nil {
		return nil, time.Time{}, false, fmt.Errorf("read the agent's stats snapshot: %w", err)
	}
	b, err := os.ReadFile(statsFile)
	if err != nil {
		return nil, time.Time{}, false, fmt.Errorf("read the agent's stats snapshot: %w", err)
	}
	s = &supervisor.Stats{}
	if err := json.Unmarshal(b, &s.Stats); err != nil {
		return nil, time.Time{}, false, fmt.Errorf("read the agent's stats snapshot %s: malformed (%v)", statsFile, err)
	}
	var m setupMark
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(statsFile), setupFile)); err == nil {
		json.Unmarshal(b, &m)
	}
	s.FailedAfterSetup = s.Failures - m.SetupFailures
	return s, fi.ModTime(), true, nil
}

// removeSnapshot removes the snapshot's directory once reported.
func removeSnapshot(statsFile string) error {
	if statsFile == "" {
		return nil
	}
	dir := filepath.Dir(statsFile)
	for _, f := range []string{statsFile, filepath.Join(dir, setupFile)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the stats snapshot: %w", err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the stats snapshot's directory: %w", err)
	}
	return nil
}

// endedNote says why the stats come from the snapshot.
func endedNote(written time.Time) string {
	return fmt.Sprintf("the agent had ended before this report step (GitLab's docker executor runs after_script in a new container from the job image, "+
		"where the script's processes are gone): these are its last stats, written at %s UTC", written.UTC().Format("15:04:05.000"))
}

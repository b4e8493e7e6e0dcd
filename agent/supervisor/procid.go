package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// procStartTime returns the start time of process pid (clock ticks since
// boot, field 22 of /proc/<pid>/stat): with the pid it names one process
// for the life of the system, where a pid alone is reused.
func procStartTime(pid int) (uint64, error) {
	if pid <= 1 {
		return 0, fmt.Errorf("pid %d is not an agent", pid)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// and ')': the fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d has exited", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// procExe returns the executable of process pid; it fails with a
// permission error for a process of another user that is not dumpable
// (the separated agent), which this user could not signal anyway.
func procExe(pid int) (string, error) {
	return os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
}

// agentIdentity asks the agent at st's address for its nonce and pid.
func agentIdentity(ctx context.Context, st *State) (*wire.AgentIdentity, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wire.AdminURL(st.BaseURL, wire.Identity), nil)
	if err != nil {
		return nil, errors.New("agent state holds a malformed URL")
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return nil, redact.Error(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("identity: status %d", resp.StatusCode)
	}
	var id wire.AgentIdentity
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&id); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return &id, nil
}

// verdict is what verifyAgent found about the process a state file names.
type verdict int

const (
	// gone: no such process, or another process now has the pid (start
	// time differs): the state is stale.
	gone verdict = iota
	// ours: the process is the recorded agent.
	ours
	// unproven: a live process with the pid that cannot be proven to be
	// the agent (legacy or planted state): never signalled.
	unproven
)

// verifyAgent decides whether st.PID is the agent st records: same start
// time, same executable (where this user can read it), and either its
// admin endpoint echoes the nonce and pid, or its executable is this very
// binary. Only "ours" may be signalled.
func verifyAgent(ctx context.Context, st *State) (verdict, string) {
	if st.PID <= 1 {
		return gone, fmt.Sprintf("pid %d is not an agent", st.PID)
	}
	start, err := procStartTime(st.PID)
	if err != nil {
		return gone, fmt.Sprintf("no process %d", st.PID)
	}
	if st.StartTime == 0 || st.Exe == "" || st.Nonce == "" {
		return unproven, fmt.Sprintf("process %d is not recorded with its start time, executable and nonce (old or hand-written state)", st.PID)
	}
	if start != st.StartTime {
		return gone, fmt.Sprintf("process %d started at tick %d, not %d: the pid was reused", st.PID, start, st.StartTime)
	}
	exe, exeErr := procExe(st.PID)
	if exeErr == nil && exe != st.Exe {
		return unproven, fmt.Sprintf("process %d runs %s, not the agent's %s", st.PID, exe, st.Exe)
	}
	if id, err := agentIdentity(ctx, st); err == nil {
		if id.Nonce == st.Nonce && id.PID == st.PID {
			return ours, ""
		}
		return unproven, fmt.Sprintf("the agent answering on %s is not process %d", st.Addr, st.PID)
	}
	if self, err := os.Executable(); exeErr == nil && err == nil && exe == self {
		return ours, ""
	}
	return unproven, fmt.Sprintf("process %d does not answer as the agent on %s", st.PID, st.Addr)
}

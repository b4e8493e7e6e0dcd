// Package wire is the protocol between the bootstrap's supervisor
// (agent/supervisor) and the agent process (agent/server), imported by both
// so that neither imports the other: the command line the supervisor starts
// the agent with, the one readiness line the agent writes on its readiness
// descriptor ("ready ADDR" or "fail KIND"), and the admin endpoints under
// the capability URL (health, stats, diagnoses, identity, stop). The
// handoff the agent reads on stdin (the token, identity and upstream list)
// is privilege.Secrets.
package wire

import (
	"strings"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// Command is the subcommand of the goproxy-setup binary that runs the agent
// process; HandoffFlag and ReadyFDFlag name the flags (without "--") the
// supervisor starts it with: read the handoff from stdin, write the
// readiness line to this descriptor.
const (
	Command     = "agent"
	HandoffFlag = "handoff-stdin"
	ReadyFDFlag = "ready-fd"
	// StatsFileFlag names the file the agent keeps a secret-free snapshot
	// of its stats in (the stats endpoint's JSON, rewritten atomically as
	// they change), which a report step reads where the agent is gone.
	StatsFileFlag = "stats-file"
)

// ReadyPrefix starts the readiness line of an agent that serves: "ready
// ADDR", the loopback host:port it listens on.
const ReadyPrefix = "ready "

// FailPrefix starts the readiness line of an agent that failed before
// serving: "fail KIND", where KIND is an errkind name, so that the
// bootstrap keeps the failure's kind instead of guessing it from text.
const FailPrefix = "fail "

// ReadyLine is the readiness line of an agent serving on addr.
func ReadyLine(addr string) string { return ReadyPrefix + addr + "\n" }

// FailLine is the readiness line of an agent that failed with kind k.
func FailLine(k errkind.Kind) string { return FailPrefix + k.String() + "\n" }

// ParseReady returns the address of a readiness line that says the agent
// serves; ok is false for a failure line or anything else.
func ParseReady(line string) (addr string, ok bool) {
	return strings.CutPrefix(strings.TrimSpace(line), ReadyPrefix)
}

// FailKind returns the kind a failure line names; ok is false when line is
// not a failure line naming a known kind.
func FailKind(line string) (errkind.Kind, bool) {
	name, ok := strings.CutPrefix(strings.TrimSpace(line), FailPrefix)
	if !ok {
		return errkind.Other, false
	}
	for k := errkind.Other; k <= errkind.Canceled; k++ {
		if k.String() == name {
			return k, true
		}
	}
	return errkind.Other, false
}

// AdminPrefix is the path under the capability token for the agent's own
// endpoints. A module path cannot start with a dot.
const AdminPrefix = ".goproxy-setup/"

// The admin endpoints, each at <base URL>/AdminPrefix<name>.
const (
	// Health answers 200 "ok" once the agent serves (GET).
	Health = "health"
	// Stats answers the forwarder's statistics as JSON (GET; proxy.Stats).
	Stats = "stats"
	// Diagnoses answers the latest diagnosis of every failed upstream, a
	// JSON array of strings (GET).
	Diagnoses = "diagnoses"
	// Identity answers an Identity (GET); only an agent given a nonce
	// serves it.
	Identity = "identity"
	// Stop stops the agent (POST, 202).
	Stop = "stop"
)

// AdminURL returns the URL of the admin endpoint name under base, the
// agent's capability URL (http://addr/token).
func AdminURL(base, name string) string { return base + "/" + AdminPrefix + name }

// AgentIdentity is what the identity endpoint answers: the nonce the
// bootstrap handed the agent and its process id, which 'stop' and 'run'
// check before they signal it.
type AgentIdentity struct {
	Nonce string `json:"nonce"`
	PID   int    `json:"pid"`
}

// The sidecar's endpoints outside the capability token (a token never
// starts with a dot), for a pod where the agent runs in a container of its
// own (goproxy-setup sidecar).
const (
	// SidecarEnvPath answers the job's environment (GOPROXY with the
	// token first, as 'run' prints it; ?format=shell|dotenv|json, shell by
	// default) to the job container's uid only: every other uid, root
	// included, gets 403. It is how the job container gets its GOPROXY
	// without sharing a file with the sidecar.
	SidecarEnvPath = "/.goproxy-setup/env"
	// ProbePath answers "ok" to anyone once the agent serves: the
	// readiness, startup and liveness probes' endpoint, which needs no
	// token and tells nothing else (no upstream, no statistics).
	ProbePath = "/.goproxy-setup/probe"
)

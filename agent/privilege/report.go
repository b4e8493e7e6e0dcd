package privilege

import (
	"errors"
	"fmt"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// ErrNotSeparated is returned by Report.Enforce when the policy requires
// privilege separation and the bootstrap had no way to root.
var ErrNotSeparated = errors.New("privilege separation required but not possible")

// UnseparatedWarning is the summary warning when the agent runs as the job's
// own user.
const UnseparatedWarning = "running unseparated: the job's code can read the client key and the enrolment token, because there is no root and no passwordless sudo to run the agent as a user of its own; run the job as root or grant `sudo -n`, or set privilege.require_separation = true in the policy to fail instead"

// Report is what the bootstrap did about privilege, for the job summary.
type Report struct {
	// Mode is how root was obtained (None: not at all).
	Mode Mode
	// User is the agent user (nil when unseparated).
	User *User
	// StateDir is the agent's private directory.
	StateDir string
	// JobRoot says the job's own steps run as root (not a job user that a
	// root entrypoint drops to, as in the runner image).
	JobRoot bool
}

// Separated reports whether the agent runs as a user of its own.
func (r Report) Separated() bool { return r.Mode != None && r.User != nil }

// RootJobWarning is what holds when the job itself runs as root (a job
// container's default, or a root shell runner): the agent still runs as a
// user of its own, but root reads any file and the job's own CI variables.
const RootJobWarning = "this job runs as root, so a root job can still read the agent's key copy (and the key's CI variable while it exists); " +
	"the key is on disk only in the agent's private directory, removed when the agent stops; " +
	"what bounds a root job's reach: short-lived certificates from step-ca (ca-url), the pod sidecar (the key mounted only into the agent's container), " +
	"or the runner image, whose jobs run as a non-root user"

// Warning returns UnseparatedWarning when the agent is not separated, a
// weaker warning for Sudo (the job can use the same sudo), RootJobWarning
// when the job's steps run as root (JobRoot), and "" otherwise.
func (r Report) Warning() string {
	switch {
	case !r.Separated():
		return UnseparatedWarning
	case r.Mode == Sudo:
		return "the agent runs as " + r.User.Name + ", but the job can still use passwordless sudo to become root and read its key: remove the job's sudo rights for full separation"
	case r.JobRoot:
		return RootJobWarning
	}
	return ""
}

// Lines returns the summary lines: what was done, then the warning if any.
func (r Report) Lines() []string {
	var lines []string
	if r.Separated() {
		verb := "uses existing"
		if r.User.Created {
			verb = "created"
		}
		lines = append(lines, fmt.Sprintf("privilege: agent runs as %s (%s user; via %s); key in %s (0700 dir, 0600 key); no supplementary groups, no_new_privs, not dumpable", r.User, verb, r.Mode, r.StateDir))
	} else {
		lines = append(lines, "privilege: agent runs as the job's user")
	}
	if w := r.Warning(); w != "" {
		lines = append(lines, "warning: "+w)
	}
	return lines
}

// Enforce returns an error wrapping ErrNotSeparated (bad input: the fix is a
// setting) when requireSeparation (the policy's
// privilege.require_separation) is set and the agent is not separated.
func (r Report) Enforce(requireSeparation bool) error {
	if !requireSeparation || r.Separated() {
		return nil
	}
	return errkind.Mark(errkind.BadInput, fmt.Errorf("%w: the policy sets privilege.require_separation, but there is no root and `sudo -n` fails: run the job as root, allow passwordless sudo, or set require_separation = false", ErrNotSeparated))
}

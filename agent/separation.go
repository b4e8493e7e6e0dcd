package agent

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/privilege"
	"github.com/goproxy-setup/goproxy-setup/agent/supervisor"
	"github.com/goproxy-setup/goproxy-setup/policies"
)

// separation is the least-privilege plan: which user the agent drops to,
// whether it is started through sudo, and its private directory.
type separation struct {
	user       string
	sudo       bool
	privateDir string
	report     privilege.Report
}

// planSeparation decides how the agent runs. With root (or passwordless
// sudo) it ensures the policy's agent user; the agent process itself, still
// root, prepares its private directory, writes the key there and drops to
// that user (see DropTo). Without any way to root the agent runs as the
// job's user, with a warning that the policy can turn into an error.
func planSeparation(ctx context.Context, pol *policies.Policy, d *supervisor.StateDir, privateDir string, log hclog.Logger) (separation, error) {
	sys := privilege.New(privilege.WithLogger(log.Named("privilege")))
	mode := sys.Detect(ctx)
	sep := separation{report: privilege.Report{Mode: mode}}
	if mode != privilege.None {
		u, err := sys.EnsureUser(ctx, pol.Privilege.User, pol.Privilege.UID)
		if err != nil {
			return sep, fmt.Errorf("agent user: %w", err)
		}
		// The agent user must reach its private directory inside the
		// job's state dir: traversable, not listable. fchmod on the
		// directory opened without following links: never a link's
		// target.
		if err := d.Chmod(0o711); err != nil && mode == privilege.Root {
			return sep, fmt.Errorf("state dir: %w", err)
		}
		if err := d.CheckPrivate(); err != nil {
			return sep, err
		}
		sep.user, sep.sudo = u.Name, mode == privilege.Sudo
		sep.privateDir = d.File(supervisor.PrivateDirName)
		if privateDir != "" {
			if sep.privateDir, err = filepath.Abs(privateDir); err != nil {
				return sep, err
			}
		}
		sep.report.User, sep.report.StateDir = u, sep.privateDir
	}
	return sep, sep.report.Enforce(pol.Privilege.RequireSeparation)
}

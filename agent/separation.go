package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/privilege"
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
func planSeparation(ctx context.Context, pol *policies.Policy, stateDir, privateDir string, log hclog.Logger) (separation, error) {
	sys := privilege.New(privilege.WithLogger(log.Named("privilege")))
	mode := sys.Detect(ctx)
	sep := separation{report: privilege.Report{Mode: mode}}
	if mode != privilege.None {
		u, err := sys.EnsureUser(ctx, pol.Privilege.User, pol.Privilege.UID)
		if err != nil {
			return sep, fmt.Errorf("agent user: %w", err)
		}
		abs, err := filepath.Abs(stateDir)
		if err != nil {
			return sep, err
		}
		// The agent user must reach its private directory inside the
		// job's state dir: traversable, not listable.
		if err := os.Chmod(abs, 0o711); err != nil && mode == privilege.Root {
			return sep, fmt.Errorf("state dir: %w", err)
		}
		sep.user, sep.sudo = u.Name, mode == privilege.Sudo
		sep.privateDir = filepath.Join(abs, "private")
		if privateDir != "" {
			if sep.privateDir, err = filepath.Abs(privateDir); err != nil {
				return sep, err
			}
		}
		sep.report.User, sep.report.StateDir = u, sep.privateDir
	}
	return sep, sep.report.Enforce(pol.Privilege.RequireSeparation)
}

// DropTo is what the agent process does after binding its listener when
// started with a user to run as: prepare the private directory (0700, the
// user's), write the client identity there (0600), and drop privileges for
// good. It fails closed.
func DropTo(ctx context.Context, userName, privateDir string, certPEM, keyPEM []byte) error {
	u, err := privilege.EnsureUser(ctx, userName, 0)
	if err != nil {
		return fmt.Errorf("agent user: %w", err)
	}
	if privateDir != "" {
		if err := privilege.PrepareDir(privateDir, u); err != nil {
			return err
		}
		if len(keyPEM) > 0 {
			if err := privilege.WriteFile(privateDir, "client.key", keyPEM, u); err != nil {
				return err
			}
			if err := privilege.WriteFile(privateDir, "client.crt", certPEM, u); err != nil {
				return err
			}
		}
	}
	return privilege.Drop(u)
}

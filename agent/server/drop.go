package server

import (
	"context"
	"fmt"

	"github.com/goproxy-setup/goproxy-setup/agent/privilege"
)

// DropTo is what the agent process does after binding its listener when
// started with a user to run as: take custody of the handoff's identity in
// the private directory (privilege.TakeCustody: 0700 dir, 0600 files, the
// user's) and drop privileges for good. It fails closed.
func DropTo(ctx context.Context, userName, privateDir string, s *privilege.Secrets) error {
	u, err := privilege.EnsureUser(ctx, userName, 0)
	if err != nil {
		return fmt.Errorf("agent user: %w", err)
	}
	if privateDir != "" {
		if err := privilege.TakeCustody(privateDir, s, u); err != nil {
			return err
		}
	}
	return privilege.Drop(u)
}

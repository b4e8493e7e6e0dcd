package agent

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/policies"
)

// separation is the least-privilege plan: which user the agent drops to
// and whether it is started through sudo.
type separation struct {
	user     string
	sudo     bool
	warnings []string
}

// planSeparation decides how the agent runs (see agent/privilege).
func planSeparation(ctx context.Context, pol *policies.Policy, log hclog.Logger) (separation, error) {
	return separation{}, nil
}

# policy.hcl: the default policy of the runner image (/etc/goproxy-setup/).
# Everything not set here is the built-in default (policies/default.hcl);
# replace this file, or set GOPROXY_SETUP_POLICY, for your upstreams.

privilege {
  # The runner image can separate the agent when the container runs as root
  # or the runner user has passwordless sudo. Set this to true once your
  # deployment does one of those, so that a misconfigured runner fails
  # instead of exposing the key to jobs.
  require_separation = false
  user               = "goproxy-agent"
}

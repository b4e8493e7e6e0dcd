# default.hcl: the built-in policy, written out. Loading this file gives
# exactly what goproxy-setup does without --policy: every module from
# https://proxy.golang.org, checked against sum.golang.org, no direct
# fetches from version control.

# The default route: upstreams for modules that no route matches.
upstreams = ["public"]

# "public" is built in; declaring it here only makes it visible.
upstream "public" {
  url             = "https://proxy.golang.org"
  timeout         = "60s"
  connect_timeout = "10s"
  fallthrough     = "404"
  tls_min_version = "1.2"
}

sumdb {
  enabled = true
  name    = "sum.golang.org"
}

direct {
  allowed = false
}

retry {
  attempts    = 3
  backoff     = "200ms"
  max_backoff = "5s"
}

circuit_breaker {
  failures = 5
  cooldown = "30s"
}

# Separate privileges where the job can (it has root); run unseparated,
# with a warning, where it cannot.
privilege {
  require_separation = false
  user               = "goproxy-agent"
  uid                = 0
}

warm {
  enabled     = true
  concurrency = 0
  extract     = false
}

env {
  goflags   = ""
  goprivate = false
}

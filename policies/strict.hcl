# strict.hcl: a locked-down policy for release builds. Only modules on the
# allow list are served, the agent must run as its own unprivileged user,
# upstream TLS is 1.3 with pinned keys, and cmd/go may not change go.mod.

upstreams = ["mirror", "public"]

# The company mirror first; if it fails in any way, the public proxy.
upstream "mirror" {
  url             = "https://goproxy.corp.example.com"
  client_cert     = "/run/goproxy-setup/client.crt"
  client_key      = "/run/goproxy-setup/client.key"
  # Placeholder pin: replace it with the hash of your proxy's key (see README.md).
  spki_pins       = ["sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]
  timeout         = "30s"
  connect_timeout = "5s"
  fallthrough     = "any"
  tls_min_version = "1.3"
}

upstream "public" {
  url             = "https://proxy.golang.org"
  tls_min_version = "1.3"
}

route {
  modules   = ["corp.example.com/*"]
  upstreams = ["mirror"]
}

# First match wins: the deny below is checked before the broader allow.
deny {
  modules = ["github.com/evil-example/*"]
  reason  = "compromised in incident 2024-17: see the security advisory"
}

allow {
  modules = [
    "corp.example.com/*",
    "golang.org/x/*",
    "google.golang.org/*",
    "github.com/hashicorp/*",
    "gopkg.in/*",
  ]
}

sumdb {
  name = "sum.golang.org"
}

direct {
  allowed = false
}

retry {
  attempts    = 2
  backoff     = "500ms"
  max_backoff = "2s"
}

circuit_breaker {
  failures = 3
  cooldown = "1m"
}

privilege {
  require_separation = true
  user               = "goproxy-agent"
}

warm {
  concurrency = 16
}

env {
  goflags   = "-mod=readonly"
  goprivate = true
}

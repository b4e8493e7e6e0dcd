# private-modules.hcl: private modules from the company's proxy with the
# job's client certificate, everything else from the public mirror.
#
# corp.example.com/* and *.corp.example.com are sent only to "internal";
# their names never reach sum.golang.org (GONOSUMDB is derived from the
# private routes), and go.sum still pins their hashes.

upstreams = ["public"]

upstream "internal" {
  url         = "https://goproxy.corp.example.com"
  client_cert = "/run/goproxy-setup/client.crt"
  client_key  = "/run/goproxy-setup/client.key"
  ca_cert     = "/etc/ssl/corp-root.pem"
  timeout     = "2m"
}

route {
  modules   = ["corp.example.com/*", "*.corp.example.com"]
  upstreams = ["internal"]
  # private = true is the default for a route.
}

# A public module the company has forked lives on the internal proxy but
# is public: private = false keeps it checked against the checksum DB.
route {
  modules   = ["github.com/corp-example/*"]
  upstreams = ["internal", "public"]
  private   = false
}

deny {
  modules = ["github.com/corp-example/legacy-*"]
  reason  = "legacy modules are retired: use corp.example.com/platform instead"
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/goproxy-setup/goproxy-setup/agent/server"
)

func init() { register(sidecarCmd{}) }

type sidecarCmd struct{}

func (sidecarCmd) Name() string { return "sidecar" }
func (sidecarCmd) Synopsis() string {
	return "run the agent as a pod's sidecar container, serving the job container's uid (examples/kubernetes)"
}

func (sidecarCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sidecar", flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	cfg := server.ProcessConfig{Stdout: stdout, Sidecar: true}
	fs.StringVar(&cfg.Listen, "listen", fmt.Sprintf("127.0.0.1:%d", server.DefaultSidecarPort), "loopback address with a fixed port: pod containers share the loopback, and the job container finds the agent there")
	fs.IntVar(&cfg.JobUID, "job-uid", -1, "the uid the job container runs as (its securityContext runAsUser): the only uid served, root included")
	probe := fs.Bool("probe", false, "ask the sidecar at --listen whether it serves, and exit 0 if it does (the pod's exec probes)")
	fs.StringVar(&cfg.RenewCAURL, "renew-ca-url", "", "step-ca URL to renew the client certificate with while running")
	fs.StringVar(&cfg.RenewCAFingerprint, "renew-ca-fingerprint", "", "SHA-256 fingerprint of that step-ca's root")
	fs.IntVar(&cfg.Limits.Owner, "max-conns-job", 0, "connections the job's uid may hold (0: 1024)")
	fs.IntVar(&cfg.Limits.PerPeer, "max-conns-per-peer", 0, "connections each other uid may hold (0: 16)")
	fs.IntVar(&cfg.Limits.Others, "max-conns-others", 0, "connections all other uids together may hold (0: 256)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *probe {
		return server.Probe(ctx, cfg.Listen)
	}
	cfg.PolicyFile, cfg.Upstream, cfg.UpstreamSet = c.policy, c.upstream.val, c.upstream.set
	cfg.ClientCert, cfg.ClientKey, cfg.CACert = c.clientCert, c.clientKey, c.caCert
	cfg.Timeout = c.timeout
	cfg.StateDir = c.stateDir
	cfg.Logger = newLogger("sidecar", &c, stderr)
	return server.Run(ctx, cfg)
}

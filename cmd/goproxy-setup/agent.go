package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/goproxy-setup/goproxy-setup/agent/server"
	"github.com/goproxy-setup/goproxy-setup/agent/wire"
)

func init() { register(agentCmd{}) }

type agentCmd struct{}

func (agentCmd) Name() string { return wire.Command }
func (agentCmd) Synopsis() string {
	return "run the loopback GOPROXY forwarder in the foreground"
}

func (agentCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(wire.Command, flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	cfg := server.ProcessConfig{Stdout: stdout}
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "loopback address to listen on")
	handoffStdin := fs.Bool(wire.HandoffFlag, false, "read the capability token, client identity, upstream list and job uid from stdin (as 'run' passes them)")
	fs.IntVar(&cfg.ReadyFD, wire.ReadyFDFlag, 0, "write 'ready ADDR' (or 'fail KIND') to this file descriptor once serving, then close it")
	fs.StringVar(&cfg.RunAs, "run-as", "", "drop privileges to this user after binding the listener (needs root)")
	fs.StringVar(&cfg.PrivateDir, "private-dir", "", "with --run-as: the agent user's private directory (0700) for its key")
	fs.StringVar(&cfg.RenewCAURL, "renew-ca-url", "", "step-ca URL to renew the client certificate with while running")
	fs.StringVar(&cfg.RenewCAFingerprint, "renew-ca-fingerprint", "", "SHA-256 fingerprint of that step-ca's root")
	fs.StringVar(&cfg.StatsFile, wire.StatsFileFlag, "", "keep a secret-free snapshot of the stats in this file (for a report step where the agent is gone)")
	fs.IntVar(&cfg.Limits.Owner, "max-conns-job", 0, "connections the job's uid and root may hold (0: 1024)")
	fs.IntVar(&cfg.Limits.PerPeer, "max-conns-per-peer", 0, "connections each other local uid may hold (0: 16)")
	fs.IntVar(&cfg.Limits.Others, "max-conns-others", 0, "connections all other uids together may hold (0: 256)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	cfg.PolicyFile, cfg.Upstream, cfg.UpstreamSet = c.policy, c.upstream.val, c.upstream.set
	cfg.ClientCert, cfg.ClientKey, cfg.CACert = c.clientCert, c.clientKey, c.caCert
	cfg.Timeout = c.timeout
	if *handoffStdin {
		cfg.Handoff = os.Stdin
	}
	cfg.Logger = newLogger("agent", &c, stderr)
	return server.Run(ctx, cfg)
}

// The goproxy-bench binary is the project's benchmark harness: it measures
// goproxy-setup against the baseline a CI job would otherwise use (`warm`:
// the cache warmer against `go mod download`; `agent`: the forwarder's
// overhead). This file is the thin main and the subcommand registry; each
// subcommand lives in a file of its own and registers itself in init.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/goproxy-setup/goproxy-setup/internal/cli"
)

// command is one subcommand.
type command = cli.Command

var commands cli.Set

func register(c command) { commands.Register(c) }

func main() {
	ctx, done := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	done()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "goproxy-bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(stderr, "Usage: goproxy-bench COMMAND [flags]\n\nCommands:\n")
		commands.List(stderr)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	c, ok := commands.Lookup(args[0])
	if !ok {
		return fmt.Errorf("unknown command %q: run goproxy-bench help", args[0])
	}
	return c.Run(ctx, args[1:], stdout, stderr)
}

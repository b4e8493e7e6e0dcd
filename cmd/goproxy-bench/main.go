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
	"sort"
	"syscall"
)

// command is one subcommand.
type command interface {
	// Name is the word that selects the command.
	Name() string
	// Synopsis is the one-line description shown in the usage.
	Synopsis() string
	// Run parses args and runs the command: results on stdout, progress
	// on stderr.
	Run(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.Name()]; dup {
		panic("internal error: duplicate command " + c.Name())
	}
	commands[c.Name()] = c
}

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
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stderr, "  %-12s %s\n", n, commands[n].Synopsis())
		}
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		return fmt.Errorf("unknown command %q: run goproxy-bench help", args[0])
	}
	return c.Run(ctx, args[1:], stdout, stderr)
}

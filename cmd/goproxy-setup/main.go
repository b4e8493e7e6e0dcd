// The goproxy-setup binary gives a CI job fast, authenticated, diagnosable
// access to a Go module proxy. This file is the thin main: it owns the
// signal-aware context and the single exit; every subcommand lives in a file
// of its own and calls into the libraries under agent/ and tlsauth/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, done := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := realMain(ctx)
	done()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "goproxy-setup: %v\n", err)
		}
		os.Exit(exitCode(err))
	}
}

func realMain(ctx context.Context) error {
	return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

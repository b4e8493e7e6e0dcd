package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/goproxy-setup/goproxy-setup/internal/version"
)

func init() { register(versionCmd{}) }

type versionCmd struct{}

func (versionCmd) Name() string     { return "version" }
func (versionCmd) Synopsis() string { return "print the version" }

func (versionCmd) Run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	_, err := fmt.Fprintln(stdout, version.Human())
	return err
}

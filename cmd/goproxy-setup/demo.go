package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/goproxy-setup/goproxy-setup/cmd/goproxy-setup/internal/demo"
)

func init() { register(demoCmd{}) }

type demoCmd struct{}

func (demoCmd) Name() string { return "demo" }
func (demoCmd) Synopsis() string {
	return "the whole flow, hermetic: throwaway CA, mTLS proxy, agent, build, warm, one fault"
}

func (demoCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "", "keep the demo's files in this directory (default: a temporary one, removed)")
	goBin := fs.String("go", "", "the go command to use (default: go on PATH)")
	verbose := fs.Bool("verbose", false, "show the agent's log")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	c := commonFlags{logLevel: "off"}
	if *verbose {
		c.logLevel = "debug"
	}
	fmt.Fprintln(stdout, "goproxy-setup demo: mTLS module proxy → loopback agent → go command, all on this machine")
	if err := demo.Run(ctx, demo.Options{Out: stdout, Dir: *dir, GoBin: *goBin, Logger: newLogger("agent", &c, stderr)}); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "demo passed")
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/policies"
)

func init() { register(policyCmd{}) }

type policyCmd struct{}

func (policyCmd) Name() string     { return "policy" }
func (policyCmd) Synopsis() string { return "check a policy file, or show the effective policy" }

const policyUsage = `Usage:
  goproxy-setup policy check FILE
      Validate FILE. Prints "FILE: ok", or every problem as
      file:line:col: message with the offending line, and exits 2.
  goproxy-setup policy show [--upstream LIST] [FILE]
      Print the effective policy (FILE, else --policy / GOPROXY_SETUP_POLICY,
      else the built-in defaults) as HCL with every default filled in and
      secrets redacted. --upstream replaces the default route as the other
      commands' flag does.

The schema is documented in policies/README.md.
`

func (policyCmd) Run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return usageErrorf("policy: name a subcommand, check or show")
	}
	switch args[0] {
	case "check":
		return policyCheck(args[1:], stdout, stderr)
	case "show":
		return policyShow(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	fmt.Fprint(stderr, policyUsage)
	return usageErrorf("policy: unknown subcommand %q: use check or show", args[0])
}

func policyCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("policy check: name exactly one policy file, like 'goproxy-setup policy check policy.hcl'")
	}
	file := fs.Arg(0)
	if _, err := policies.Load(file); err != nil {
		var perr *policies.Error
		if !errors.As(err, &perr) {
			return err // unreadable: the message names the file and the fix
		}
		fmt.Fprintln(stderr, perr.Error())
		n := len(perr.Diagnostics)
		plural := "s"
		if n == 1 {
			plural = ""
		}
		return errkind.Mark(errkind.BadInput, fmt.Errorf("policy %s: %d problem%s: fix them and run 'goproxy-setup policy check %s' again", file, n, plural, file))
	}
	_, err := fmt.Fprintf(stdout, "%s: ok\n", file)
	return err
}

func policyShow(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy show", flag.ContinueOnError)
	policyFile := fs.String("policy", "", "policy file (HCL) when FILE is not given; built-in defaults when neither is")
	var upstreamList optString
	fs.Var(&upstreamList, "upstream", "upstream list in cmd/go's GOPROXY syntax that replaces the policy's default route (an empty list is an error)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	file := *policyFile
	switch fs.NArg() {
	case 0:
	case 1:
		file = fs.Arg(0)
	default:
		return usageErrorf("policy show: name at most one policy file")
	}
	pol, err := policies.Resolve(file, upstreamList.val, upstreamList.set)
	if err != nil {
		return err
	}
	return pol.Show(stdout)
}

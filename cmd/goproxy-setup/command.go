package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/cli"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// command is one subcommand; each lives in its own file, registers itself
// in an init function, parses its flags and calls a library.
type command = cli.Command

var commands cli.Set

func register(c command) { commands.Register(c) }

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: goproxy-setup COMMAND [flags]\n\nCommands:\n")
	commands.List(w)
	fmt.Fprintf(w, "\nEvery flag has an environment twin: GOPROXY_SETUP_ + its upper-case name, '-' as '_'.\nRun 'goproxy-setup COMMAND -h' for a command's flags.\n")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usageErrorf("no command given: name one of the commands above")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	case "-version", "--version":
		args = []string{"version"}
	}
	c, ok := commands.Lookup(args[0])
	if !ok {
		usage(stderr)
		return usageErrorf("unknown command %q: use one of the commands above", args[0])
	}
	return c.Run(ctx, args[1:], stdout, stderr)
}

// usageErrorf returns a bad-input error (exit 2).
func usageErrorf(format string, args ...any) error {
	return errkind.Mark(errkind.BadInput, fmt.Errorf(format, args...))
}

// exitCode maps an error to the Contract's exit codes.
func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return errkind.Of(err).ExitCode()
}

// envName is the environment twin of a flag: GOPROXY_SETUP_CLIENT_CERT for
// --client-cert.
func envName(flagName string) string {
	return "GOPROXY_SETUP_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args into fs after filling every flag that was not given
// on the command line from its environment twin. Flags win over the
// environment. Errors name the flag or variable and are bad input.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: goproxy-setup %s [flags]\n\nFlags (each also read from GOPROXY_SETUP_<NAME>):\n", fs.Name())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errkind.Mark(errkind.BadInput, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s (twin of --%s): %w", envName(f.Name), f.Name, err))
		}
	})
	return errkind.Mark(errkind.BadInput, errors.Join(errs...))
}

// stringList is a repeatable flag; from the environment it takes a
// newline- or comma-separated list.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == ',' }) {
		if f = strings.TrimSpace(f); f != "" {
			*s = append(*s, f)
		}
	}
	return nil
}

// commonFlags are the flags shared by run, agent, warm, diagnose, github and
// gitlab (docs/architecture.md).
type commonFlags struct {
	upstream   optString
	clientCert string
	clientKey  string
	caCert     string
	policy     string
	stateDir   string
	timeout    time.Duration
	logLevel   string
	logFormat  string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.Var(&c.upstream, "upstream", "upstream list in cmd/go's GOPROXY syntax: ',' falls through on 404/410, '|' on any error; replaces the policy's default route (default: the policy's, https://proxy.golang.org built in); an empty list is an error")
	fs.StringVar(&c.clientCert, "client-cert", "", "PEM file with the client certificate (and chain) presented to the upstream")
	fs.StringVar(&c.clientKey, "client-key", "", "PEM file with the client certificate's private key (mode 0600)")
	fs.StringVar(&c.caCert, "ca-cert", "", "PEM file with extra root certificates for the upstream")
	fs.StringVar(&c.policy, "policy", "", "policy file (HCL); built-in defaults when empty")
	fs.StringVar(&c.stateDir, "state-dir", "", "directory for the agent's pid, port, logs and reports (default under the CI temp dir or the user cache dir)")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "per-fetch timeout")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error, off")
	fs.StringVar(&c.logFormat, "log-format", "", "log format: text or json (default text on a terminal, json otherwise)")
}

// optString is a string flag that knows whether it was given, on the
// command line or through its environment twin: an explicitly empty
// --upstream "" is bad input, not the default.
type optString struct {
	val string
	set bool
}

func (o *optString) String() string { return o.val }

func (o *optString) Set(v string) error {
	o.val, o.set = v, true
	return nil
}

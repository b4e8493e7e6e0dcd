package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/agent"
	"github.com/goproxy-setup/goproxy-setup/agent/supervisor"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/agent/warm"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/humanize"
	"github.com/goproxy-setup/goproxy-setup/policies"
)

func init() { register(warmCmd{}) }

type warmCmd struct{}

func (warmCmd) Name() string { return "warm" }
func (warmCmd) Synopsis() string {
	return "warm GOMODCACHE from go.sum through the agent or straight to the upstream"
}

func (warmCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		common      commonFlags
		goSums      stringList
		concurrency int
		jsonOut     bool
		extract     bool
		allGoSum    bool
	)
	fs := flag.NewFlagSet("warm", flag.ContinueOnError)
	common.register(fs)
	fs.Var(&goSums, "go-sum", "go.sum or go.work.sum file to warm for; the go.mod or go.work next to it is loaded as cmd/go loads it (repeatable; default ./go.work.sum when ./go.work exists, else ./go.sum)")
	fs.IntVar(&concurrency, "concurrency", 0, fmt.Sprintf("zips fetched at once, > 0 (default: the policy's warm.concurrency, else %d)", warm.DefaultConcurrency))
	fs.BoolVar(&jsonOut, "json", false, "print the summary as a JSON object on stdout")
	fs.BoolVar(&extract, "extract", policies.Default().Warm.Extract, "also write the extracted module trees; honours GOFLAGS=-modcacherw (default: the policy's warm.extract)")
	fs.BoolVar(&allGoSum, "all-gosum", false, "also warm, best-effort, every go.sum line the build does not need (a 404/410 on those is a warning)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("warm takes no arguments, got %q: name go.sum files with --go-sum", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, name := range []string{"extract", "concurrency"} {
		if _, ok := os.LookupEnv(envName(name)); ok {
			given[name] = true
		}
	}
	if given["concurrency"] && concurrency <= 0 {
		return usageErrorf("--concurrency %d: pass a positive number of zips fetched at once, e.g. %d", concurrency, warm.DefaultConcurrency)
	}
	if common.timeout < 0 {
		return usageErrorf("--timeout %s: pass a positive per-fetch duration, e.g. 60s (0: no bound)", common.timeout)
	}
	if len(goSums) == 0 {
		goSums = warm.DefaultGoSums(".")
		if len(goSums) == 0 {
			return usageErrorf("no go.work or go.sum in the current directory: run in the module's directory or name files with --go-sum")
		}
	}
	pol, err := loadPolicy(&common)
	if err != nil {
		return err
	}
	if !given["extract"] {
		extract = pol.Warm.Extract
	}
	if !given["concurrency"] {
		concurrency = pol.Warm.Concurrency
	}
	logger := newLogger("warm", &common, stderr)
	src, done, err := newSource(ctx, &common, logger)
	if err != nil {
		return err
	}
	defer done()
	noProxy := goEnv(ctx, "GONOPROXY")
	sum, err := warm.Run(ctx, warm.Options{
		Source:      src,
		GoSumFiles:  goSums,
		AllGoSum:    allGoSum,
		Concurrency: concurrency,
		Extract:     extract,
		Timeout:     common.timeout,
		Logger:      logger,
		Progress:    stderr,
		Skip: func(mod string) (string, bool) {
			if reason, denied := pol.Denied(mod); denied {
				return "denied by policy: " + reason, true
			}
			if noProxy != "" && module.MatchPrefixPatterns(noProxy, mod) {
				return "matches GONOPROXY/GOPRIVATE " + noProxy + ": cmd/go fetches it directly, not through a proxy", true
			}
			return "", false
		},
	})
	if k := errkind.Of(err); k == errkind.Canceled || k == errkind.Local {
		// One line, printed by main: the cause is not per module, and
		// neither is a network diagnosis.
		return err
	}
	if sum != nil {
		if jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if werr := enc.Encode(sum); werr != nil && err == nil {
				err = werr
			}
		} else {
			writeWarmSummary(stdout, sum)
		}
	}
	if errkind.Of(err) == errkind.Unreachable {
		// The Contract: exit 3 comes with a diagnosis and its report.
		err = diagnoseAfterWarm(ctx, &common, pol, logger, stderr, err)
	}
	return err
}

// diagnoseAfterWarm runs the diagnostic ladder against the upstreams after
// a transport failure, writes the reports into the state dir and names
// the report in the returned error (still an Unreachable one).
func diagnoseAfterWarm(ctx context.Context, c *commonFlags, pol *policies.Policy, logger hclog.Logger, stderr io.Writer, werr error) error {
	entries := upstream.RouteEntries(pol.DefaultRoute, false)
	id, roots, _ := loadIdentity(c)
	dir := c.stateDir
	if dir == "" {
		dir = supervisor.DefaultStateDir()
	}
	d, err := supervisor.OpenStateDir(dir)
	if err != nil {
		return errors.Join(werr, fmt.Errorf("no diagnosis: %w", err))
	}
	defer d.Close()
	r, path := agent.Diagnose(ctx, d, agent.Targets(entries, id, roots), logger)
	fmt.Fprintf(stderr, "warm: diagnosis: %s: %s (report: %s)\n", r.Verdict.Layer, r.Verdict.Summary, path)
	return errkind.Mark(errkind.Unreachable, fmt.Errorf("%w\ndiagnosis: %s (full report: %s)", werr, r.Verdict.Summary, path))
}

// goEnv returns `go env NAME`, or the environment's NAME when the go
// command is not at hand.
func goEnv(ctx context.Context, name string) string {
	out, err := exec.CommandContext(ctx, "go", "env", name).Output()
	if err != nil {
		return os.Getenv(name)
	}
	return strings.TrimSpace(string(out))
}

// writeWarmSummary prints the summary for people.
func writeWarmSummary(w io.Writer, s *warm.Summary) {
	if s.Failed > 0 {
		fmt.Fprintf(w, "warm FAILED: %d of %d modules failed in %.1fs (%d cache hits, %d fetched, %s from %s into %s)\n",
			s.Failed, s.Modules, s.Seconds, s.Hits, s.Fetched, humanize.Bytes(s.Bytes), s.Upstream, s.ModCache)
	} else {
		fmt.Fprintf(w, "warmed %d modules (%d zips) in %.1fs: %d cache hits, %d fetched, %s from %s into %s\n",
			s.Modules, s.Zips, s.Seconds, s.Hits, s.Fetched, humanize.Bytes(s.Bytes), s.Upstream, s.ModCache)
	}
	if len(s.Slowest) > 0 && s.Fetched > 0 {
		fmt.Fprintf(w, "slowest:")
		for _, t := range s.Slowest {
			fmt.Fprintf(w, " %s@%s %.1fs", t.Module, t.Version, t.Seconds)
		}
		fmt.Fprintln(w)
	}
	for _, sk := range s.Skipped {
		v := "@" + sk.Version
		if sk.Version == "" {
			v = " (all versions)"
		}
		fmt.Fprintf(w, "skipped %s%s: %s\n", sk.Module, v, sk.Reason)
	}
	for _, m := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", m)
	}
	for _, f := range s.Failures {
		fmt.Fprintf(w, "FAILED %s@%s (%s): %s\n", f.Module, f.Version, f.Kind, f.Error)
	}
}

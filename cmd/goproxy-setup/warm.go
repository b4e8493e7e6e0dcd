package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/agent/warm"
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
	)
	fs := flag.NewFlagSet("warm", flag.ContinueOnError)
	common.register(fs)
	fs.Var(&goSums, "go-sum", "go.sum or go.work.sum file to warm from (repeatable; default ./go.sum and ./go.work.sum when present)")
	fs.IntVar(&concurrency, "concurrency", 0, fmt.Sprintf("module versions warmed at once (0: the policy's, else %d)", warm.DefaultConcurrency))
	fs.BoolVar(&jsonOut, "json", false, "print the summary as a JSON object on stdout")
	fs.BoolVar(&extract, "extract", true, "also write the extracted module trees (default: the policy's warm.extract)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("warm takes no arguments, got %q: name go.sum files with --go-sum", fs.Args())
	}
	extractGiven := false
	fs.Visit(func(f *flag.Flag) { extractGiven = extractGiven || f.Name == "extract" })
	if _, ok := os.LookupEnv(envName("extract")); ok {
		extractGiven = true
	}
	if len(goSums) == 0 {
		for _, f := range []string{"go.sum", "go.work.sum"} {
			if _, err := os.Stat(f); err == nil {
				goSums = append(goSums, f)
			}
		}
		if len(goSums) == 0 {
			return usageErrorf("no go.sum or go.work.sum in the current directory: run in the module's directory or name files with --go-sum")
		}
	}
	pol, err := loadPolicy(&common)
	if err != nil {
		return err
	}
	if !extractGiven {
		extract = pol.Warm.Extract
	}
	if concurrency == 0 {
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
	return err
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
	fmt.Fprintf(w, "warmed %d modules in %.1fs: %d cache hits, %d fetched, %.1f MB from %s into %s\n",
		s.Modules, s.Seconds, s.Hits, s.Fetched, float64(s.Bytes)/1e6, s.Upstream, s.ModCache)
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
	for _, f := range s.Failures {
		fmt.Fprintf(w, "FAILED %s@%s (%s): %s\n", f.Module, f.Version, f.Kind, f.Error)
	}
}

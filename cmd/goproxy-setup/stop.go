package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/agent/supervisor"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"

	"github.com/goproxy-setup/goproxy-setup/agent/ci"
)

func init() {
	register(stopCmd{})
	register(statusCmd{})
}

type stopCmd struct{}

func (stopCmd) Name() string     { return "stop" }
func (stopCmd) Synopsis() string { return "stop the running agent and print its final stats" }

func (stopCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return statsCommand(ctx, "stop", args, stdout, stderr, supervisor.Stop)
}

type statusCmd struct{}

func (statusCmd) Name() string     { return "status" }
func (statusCmd) Synopsis() string { return "print the running agent's stats" }

func (statusCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return statsCommand(ctx, "status", args, stdout, stderr, supervisor.Status)
}

func statsCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer, get func(context.Context, *supervisor.StateDir) (*supervisor.Stats, error)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "the agent's state directory (as given to run)")
	asJSON := fs.Bool("json", false, "print the stats as JSON")
	failOnErrors := fs.Bool("fail-on-errors", name == "stop", "exit 3 when fetches failed after setup")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	dir := *stateDir
	if dir == "" {
		dir = supervisor.DefaultStateDir()
	}
	d, err := supervisor.OpenStateDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	s, err := get(ctx, d)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return err
		}
	} else {
		writeStats(stdout, s)
	}
	if *failOnErrors && s.FailedAfterSetup > 0 {
		return errkind.Mark(errkind.Unreachable, fmt.Errorf("%d module fetches failed after setup (by layer: %s); see the agent log (%s) and 'goproxy-setup diagnose'", s.FailedAfterSetup, formatCounts(s.ErrorsByLayer), d.File("agent.log")))
	}
	return nil
}

func writeStats(w io.Writer, s *supervisor.Stats) {
	fmt.Fprintf(w, "agent pid %d, up %s\n", s.PID, s.Uptime)
	fmt.Fprintf(w, "  requests           %d\n", s.Requests)
	kinds := make([]string, 0, len(s.Served))
	for k := range s.Served {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "  served %-11s %d\n", k, s.Served[k])
	}
	fmt.Fprintf(w, "  not found          %d\n", s.NotFound)
	fmt.Fprintf(w, "  bytes              %d\n", s.Bytes)
	if s.Answered > 0 {
		fmt.Fprintf(w, "  upstream answered  %d (%s; relayed to the go command, not failures)\n", s.Answered, formatCounts(s.AnsweredByStatus))
	}
	fmt.Fprintf(w, "  upstream failures  %d (after setup: %d)\n", s.Failures, s.FailedAfterSetup)
	for _, l := range slices.Sorted(maps.Keys(s.ErrorsByLayer)) {
		fmt.Fprintf(w, "    layer %-12s %d\n", l, s.ErrorsByLayer[l])
	}
	fmt.Fprintf(w, "  rejected/denied    %d/%d\n", s.Rejected, s.Denied)
	fmt.Fprintf(w, "  upstream latency   p50 %.1f ms, p90 %.1f ms, p99 %.1f ms\n", s.LatencyP50, s.LatencyP90, s.LatencyP99)
	for _, h := range s.Upstreams {
		if l := ci.UpstreamLine(h); l != "" {
			fmt.Fprintf(w, "  network            %s\n", l)
		}
	}
	for _, d := range s.Diagnoses {
		fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(d, "\n", "\n    "))
	}
}

// formatCounts renders counts by name as "http: 2, tls: 1", sorted by
// name (never Go's map syntax).
func formatCounts(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

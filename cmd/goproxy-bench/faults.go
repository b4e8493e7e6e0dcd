package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/agent/warm"
	"github.com/goproxy-setup/goproxy-setup/internal/faultproxy"
	"github.com/goproxy-setup/goproxy-setup/internal/humanize"
	"github.com/goproxy-setup/goproxy-setup/policies"
)

func init() { register(faultsBench{}) }

// faultsBench measures `go mod download` direct, through the agent, and
// warm, against an upstream that breaks each zip once.
type faultsBench struct{}

func (faultsBench) Name() string { return "faults" }
func (faultsBench) Synopsis() string {
	return "direct `go mod download` vs through the agent vs warm, with each zip broken once (cut, stall, reset, 503, silent)"
}

const faultsBenchUsage = `Usage: goproxy-bench faults [flags]

Serves the primed proxy of a fixture (see 'goproxy-bench warm'; primed
once from the real proxy) on 127.0.0.1 through internal/faultproxy, which
breaks every .zip once, on its first request, all zips at once as one
network event would; then times with a cold GOMODCACHE each time:

  direct  'go mod download' (GOSUMDB=off, GOFLAGS=-mod=mod) straight to it
  agent   the same through the forwarder (in this process: proxy.Handler
          over upstream.Client with the policy's defaults: 3 attempts,
          200 ms backoff, breaker 5 failures / 30 s; --timeout as the
          per-fetch response-header and idle-body timeout)
  warm    warm straight to it through upstream.Client, as
          'goproxy-setup warm' does

and prints, per fault and path: the time, the outcome, the retries and
resumes the upstream client counted, and the bytes the upstream sent more
than once (sent in all minus the size of every file asked for).
'cut-norange' is a cut from an upstream without Range support: the
agent and warm cannot resume, which shows what resuming saves. 'silent'
is an upstream that answers nothing to any request for --stall: the
time the go command takes to fail, and whether it prints the agent's
diagnosis (the fail-fast of a really-down upstream).

Example:
  goproxy-bench faults --fixtures caddy --faults none,cut,stall,reset,503,cut-norange,silent

Flags:
`

func (faultsBench) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		fixtures, fixturesDir, faults, cacheDir, upstreamURL, modes string
		timeout, stall, limit, directLimit                          time.Duration
	)
	ucd, _ := os.UserCacheDir()
	fs := flag.NewFlagSet("faults", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, faultsBenchUsage); fs.PrintDefaults() }
	fs.StringVar(&fixtures, "fixtures", "caddy", "fixture names: NAME.go.sum and NAME.go.mod in --fixtures-dir")
	fs.StringVar(&fixturesDir, "fixtures-dir", defaultFixturesDir(), "directory of the go.sum fixtures")
	fs.StringVar(&faults, "faults", "none,cut,stall,reset,503,cut-norange", "faults, each injected once per zip")
	fs.StringVar(&modes, "modes", "direct,agent,warm", "what to time")
	fs.StringVar(&cacheDir, "cache-dir", filepath.Join(ucd, "goproxy-setup-bench"), "where the primed proxy is kept between runs")
	fs.StringVar(&upstreamURL, "upstream", "", "module proxy to prime from (default: the first proxy of `go env GOPROXY`)")
	fs.DurationVar(&timeout, "timeout", 5*time.Second, "the agent's and warm's per-fetch timeout (response header, idle body), as --timeout of goproxy-setup")
	fs.DurationVar(&stall, "stall", 30*time.Second, "how long a stalled body (or a silent upstream) stays silent before the upstream closes it")
	fs.DurationVar(&limit, "limit", 5*time.Minute, "longest run through the agent or of warm; one still fetching then is stopped and reported as such")
	fs.DurationVar(&directLimit, "direct-limit", time.Minute, "longest direct run: cmd/go has no timeout of its own (a stalled or silent upstream holds it until the upstream gives up)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if upstreamURL == "" {
		if upstreamURL, err = firstProxy(ctx); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "goproxy-bench-faults-")
	if err != nil {
		return err
	}
	defer removeTree(work)
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("%w: %w", errNoGo, err)
	}
	b := &bench{goBin: goBin, work: work, stderr: stderr}
	defer func() {
		for _, d := range b.trash {
			removeTree(d)
		}
	}()
	modeSet := wordSet(modes)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	defer tw.Flush() // once, at the end: the columns align over every row
	fmt.Fprintf(tw, "fixture\tfault (once per zip)\tpath\tseconds\tvs direct, no fault\toutcome\tretries\tresumes\tsent twice\n")
	for _, name := range strings.Split(fixtures, ",") {
		fx, proxyDir, err := b.primedFixture(ctx, name, fixturesDir, cacheDir, upstreamURL)
		if err != nil {
			return err
		}
		var base float64
		for _, fname := range strings.Split(faults, ",") {
			fname = strings.TrimSpace(fname)
			opts, err := faultOptions(fname, stall)
			if err != nil {
				return err
			}
			for _, mode := range []string{"direct", "agent", "warm"} {
				if !modeSet[mode] {
					continue
				}
				fmt.Fprintf(stderr, "%s, %s, %s\n", name, fname, mode)
				lim := limit
				if mode == "direct" {
					lim = directLimit
				}
				r, err := b.faultRun(ctx, fx, proxyDir, opts, mode, timeout, lim)
				if err != nil {
					return err
				}
				if fname == "none" && mode == "direct" {
					base = r.secs
				}
				ratio := "-"
				if base > 0 {
					ratio = fmt.Sprintf("%.2fx", r.secs/base)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\n", name, fname, mode, r.secs, ratio, r.outcome, r.count(r.retries), r.count(r.resumes), humanize.Bytes(max(0, int64(r.twice))))
				fmt.Fprintf(stderr, "  %.1fs %s\n", r.secs, r.outcome)
			}
		}
	}
	return nil
}

// faultOptions returns the faultproxy options of a fault name.
func faultOptions(name string, stall time.Duration) (faultproxy.Options, error) {
	norange := false
	if n, ok := strings.CutSuffix(name, "-norange"); ok {
		name, norange = n, true
	}
	f, err := faultproxy.ParseFault(name)
	if err != nil {
		return faultproxy.Options{}, fmt.Errorf("--faults: %w", err)
	}
	o := faultproxy.Options{Fault: f, StallFor: stall, NoRange: norange}
	if f == faultproxy.Silent {
		o.Match, o.Times = func(string) bool { return true }, 1<<30 // down: every request
	}
	return o, nil
}

// faultResult is one timed run.
type faultResult struct {
	secs             float64
	outcome          string
	retries, resumes int64 // -1: not counted (direct)
	twice            int64
}

func (r faultResult) count(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// faultRun times one mode against a fresh faulty upstream serving
// proxyDir.
func (b *bench) faultRun(ctx context.Context, fx fixture, proxyDir string, opts faultproxy.Options, mode string, timeout, limit time.Duration) (faultResult, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	fh := faultproxy.New(os.DirFS(proxyDir), opts)
	defer fh.Close()
	up, err := serveHandler(fh)
	if err != nil {
		return faultResult{}, err
	}
	defer up.Close()
	upURL := "http://" + up.Addr().String()
	res := faultResult{retries: -1, resumes: -1}
	var runErr error
	start := time.Now()
	switch mode {
	case "direct":
		_, runErr = b.goModDownload(ctx, fx, upURL)
	case "agent", "warm":
		c, err := benchClient(upURL, timeout)
		if err != nil {
			return res, err
		}
		defer c.Close()
		if mode == "warm" {
			mc, err := os.MkdirTemp(b.work, "warm-")
			if err != nil {
				return res, err
			}
			b.trash = append(b.trash, mc)
			start = time.Now()
			var sum *warm.Summary
			sum, runErr = warm.Run(ctx, warm.Options{Source: c, GoSumFiles: []string{fx.goSum}, ModCache: mc})
			if runErr != nil && sum != nil {
				runErr = fmt.Errorf("%d of %d modules failed: %w", sum.Failed, sum.Modules, runErr)
			}
		} else {
			h, err := proxy.New(proxy.Config{Token: benchToken, Upstream: c})
			if err != nil {
				return res, err
			}
			ag, err := serveHandler(h)
			if err != nil {
				return res, err
			}
			defer ag.Close()
			start = time.Now()
			_, runErr = b.goModDownload(ctx, fx, "http://"+ag.Addr().String()+"/"+benchToken)
		}
		hs := c.Health()[0]
		res.retries, res.resumes = hs.Retries, hs.Resumes
	default:
		return res, fmt.Errorf("--modes: unknown mode %q: want direct, agent or warm", mode)
	}
	res.secs = time.Since(start).Seconds()
	fh.Close() // end stalls still waiting
	fh.Wait()
	n := fh.Counts()
	res.twice = n.BytesSent - n.Distinct
	res.outcome = "ok"
	switch {
	case parent.Err() != nil:
		return res, parent.Err()
	case ctx.Err() != nil:
		res.outcome = fmt.Sprintf("STOPPED after %s, still fetching", limit)
	case runErr != nil:
		res.outcome = "FAILED: " + firstLineOf(runErr)
	}
	return res, nil
}

const benchToken = "goproxy-bench-faults-token"

// benchClient is the upstream client the agent builds from the default
// policy and --timeout.
func benchClient(u string, timeout time.Duration) (*upstream.Client, error) {
	entries, err := upstream.ParseList(u)
	if err != nil {
		return nil, err
	}
	pol := policies.Default()
	t := upstream.DefaultTimeouts(timeout)
	return upstream.New(upstream.Options{
		Entries:   entries,
		Transport: upstream.NewTransport(upstream.TransportOptions{Timeouts: t, Retry: upstream.Retry{Attempts: pol.Retry.Attempts, Backoff: pol.Retry.Backoff, MaxBackoff: pol.Retry.MaxBackoff}}),
		Breaker:   upstream.Breaker{Failures: pol.CircuitBreaker.Failures, Cooldown: pol.CircuitBreaker.Cooldown},
	}), nil
}

// serveHandler serves h on 127.0.0.1 until the listener is closed.
func serveHandler(h http.Handler) (net.Listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	return closerListener{Listener: l, srv: srv}, nil
}

// closerListener closes the server (and its connections) with the
// listener.
type closerListener struct {
	net.Listener
	srv *http.Server
}

func (c closerListener) Close() error { return c.srv.Close() }

// firstLineOf returns the go command's most telling line of err, shortened
// to its end: the agent's diagnosis when cmd/go printed it, else the first
// one naming an error, else the first.
func firstLineOf(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for _, l := range lines {
		if i := strings.Index(l, "goproxy-setup:"); i >= 0 {
			return clipLine(l[i:])
		}
	}
	for _, l := range lines {
		if strings.Contains(l, "unexpected EOF") || strings.Contains(l, "reset") || strings.Contains(l, "503") || strings.Contains(l, "502") || strings.Contains(l, "504") {
			return clipLine(strings.TrimSpace(l[strings.LastIndex(l, ": ")+2:]))
		}
	}
	return clipLine(lines[0])
}

func clipLine(s string) string {
	if len(s) > 90 {
		return s[:87] + "..."
	}
	return s
}

var errNoGo = errors.New("the go command is needed for the baseline")

// Package warm owns warming the Go module cache with exactly what cmd/go
// will read: it loads the module graph of the go.mod (or go.work) next to
// each go.sum as cmd/go does (graph.go), fetches the .mod files that load
// reads and the .info, .mod and .zip of every module `go mod download`
// would download, concurrently from a Source (the upstream with the
// agent's identity and failover, or a running agent), verifies each
// against go.sum (verify.go), and writes it into GOMODCACHE in exactly
// cmd/go's layout, holding cmd/go's lock files and renaming complete files
// into place (cache.go), so that a concurrent go command or a kill at any
// moment never sees a corrupt entry and a later `GOPROXY=off go build`
// needs no network.
package warm

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/version"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// DefaultConcurrency is the number of zips fetched at once (and, apart,
// of go.mod files) when Options.Concurrency is 0. Chosen by measurement,
// not by GOMAXPROCS (`goproxy-bench warm --fixtures caddy --delays 50ms
// --modes warm-noextract --sweep 4,8,16,32,64`, 2 cores: 8.2 s at 4, 6.9 s
// at 8, 6.5 s at 16, 6.3 s at 32, 5.2 s at 64 with 33 MB RSS instead of
// 24 MB): past 16 the warm is bound by hashing, not by the network.
const DefaultConcurrency = 32

// Options configure Run.
type Options struct {
	// Source serves the GOPROXY protocol files. Required.
	Source Source
	// GoSumFiles are the go.sum / go.work.sum files to warm for. Required.
	// The go.mod (go.sum) or go.work (go.work.sum) next to each, named as
	// cmd/go names it (NAME.go.sum → NAME.go.mod), is loaded as cmd/go
	// loads it; a workspace also brings the go.sum of every module it
	// uses. A go.sum with neither next to it is warmed line by line.
	GoSumFiles []string
	// AllGoSum also warms, best-effort, every go.sum line the build does
	// not need: a 404 or 410 for those is a warning, not a failure.
	AllGoSum bool
	// ModCache is the module cache root; empty means `go env GOMODCACHE`.
	// It must be absolute, as cmd/go requires.
	ModCache string
	// Concurrency is the number of zips (and apart, of go.mod files)
	// fetched at once; 0 means DefaultConcurrency; negative is bad input.
	Concurrency int
	// Extract also writes the extracted, read-only <module>@<version>/
	// trees; without it the cache holds the download cache only, which
	// cmd/go extracts on demand.
	Extract bool
	// ModCacheRW leaves extracted trees writable, as cmd/go does under
	// GOFLAGS=-modcacherw. When ModCache is empty it is also set by a
	// -modcacherw in `go env GOFLAGS`, else by one in $GOFLAGS.
	ModCacheRW bool
	// Timeout bounds each fetch attempt; 0 means no bound beyond ctx;
	// negative is bad input.
	Timeout time.Duration
	// Attempts is the number of tries of a fetch that fails temporarily
	// (network error, timeout, 5xx, truncated body); 0 means 3.
	Attempts int
	// Logger receives debug and warning logs; nil means none.
	Logger hclog.Logger
	// Progress, when not nil, receives progress: a live bar when it is a
	// terminal, a line every ProgressInterval otherwise.
	Progress io.Writer
	// ProgressInterval is the period of progress lines off a terminal;
	// 0 means 5 s.
	ProgressInterval time.Duration
	// Skip, when not nil, is asked about every module path; a module it
	// skips (GOPRIVATE, denied by policy) is reported in Summary.Skipped
	// with the reason, never fetched.
	Skip func(modulePath string) (reason string, skip bool)
}

// Summary is the outcome of a warm.
type Summary struct {
	// Modules is the number of module versions warmed (hits, fetched and
	// failed; skipped ones not included).
	Modules int `json:"modules"`
	// Zips is the number of module zips among them (the build list part
	// cmd/go downloads).
	Zips int `json:"zips"`
	// Hits is the number of module versions already valid in the cache.
	Hits int `json:"hits"`
	// Fetched is the number of module versions that needed a fetch.
	Fetched int `json:"fetched"`
	// Failed is the number of module versions that failed (len(Failures)).
	Failed int `json:"failed"`
	// Bytes is the number of bytes fetched.
	Bytes int64 `json:"bytes"`
	// Seconds is the wall time of the warm.
	Seconds float64 `json:"seconds"`
	// Upstream names the source (redacted).
	Upstream string `json:"upstream"`
	// ModCache is the module cache written.
	ModCache string `json:"modcache"`
	// Slowest are the slowest module versions, slowest first.
	Slowest []Timing `json:"slowest"`
	// Skipped are the module versions not warmed, with the reason.
	Skipped []Skipped `json:"skipped"`
	// Failures are the module versions that failed, with the error.
	Failures []Failure `json:"failures"`
	// Warnings are problems that do not fail the warm: an optional go.sum
	// line (AllGoSum) the upstream does not have, a go.mod read without a
	// go.sum line, a toolchain the go.mod asks for.
	Warnings []string `json:"warnings"`
}

// Timing is the time spent on one module version.
type Timing struct {
	Module  string  `json:"module"`
	Version string  `json:"version"`
	Seconds float64 `json:"seconds"`
	Bytes   int64   `json:"bytes"`
}

// Skipped is a module version left out, and why.
type Skipped struct {
	Module  string `json:"module"`
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

// Failure is a module version that could not be warmed.
type Failure struct {
	Module  string `json:"module"`
	Version string `json:"version"`
	// Kind is an errkind name: "integrity", "unreachable", "upstream
	// answered", "local fault" or "other".
	Kind  string `json:"kind"`
	Error string `json:"error"`
}

// MismatchError is a fetched file whose hash differs from go.sum.
// Nothing is written for it.
type MismatchError struct {
	Module, Version string
	// File is "zip" or "go.mod".
	File string
	// Expected is go.sum's hash, Where its file:line; Received is the
	// hash of what the upstream sent.
	Expected, Where, Received string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("checksum mismatch for %s@%s (%s): %s has %s, the upstream sent %s; nothing was written for it (a tampered upstream, or a wrong go.sum line)",
		e.Module, e.Version, e.File, e.Where, e.Expected, e.Received)
}

// Run warms the module cache for opts.GoSumFiles. Bad options, a
// malformed or unreadable go.sum, go.mod or go.work, and a relative
// module cache are bad-input errors and nothing is fetched. A fault of the
// module cache (not writable, disk full) stops the warm with one local
// fault error naming the path. Otherwise every needed file is attempted;
// each failed module version is reported in the Summary and in the
// returned error (errors.Join, marked with its errkind: integrity first,
// then unreachable, then upstream answered). A cancelled ctx returns one
// Canceled error. The Summary is returned whenever the warm started.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	start := time.Now()
	if opts.Source == nil {
		return nil, errors.New("warm: no source")
	}
	if len(opts.GoSumFiles) == 0 {
		return nil, errkind.Mark(errkind.BadInput, errors.New("no go.sum file given: name one with --go-sum"))
	}
	if opts.Concurrency < 0 {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("--concurrency %d: pass a positive number of module versions fetched at once, e.g. %d", opts.Concurrency, DefaultConcurrency))
	}
	if opts.Timeout < 0 {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("--timeout %s: pass a positive duration, e.g. 60s", opts.Timeout))
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	root, rw := opts.ModCache, opts.ModCacheRW
	if v := os.Getenv("GOMODCACHE"); root == "" && v != "" && !filepath.IsAbs(v) {
		root = v // refused below, before go env refuses it less clearly
	}
	if root == "" {
		env, err := goEnv(ctx, "GOMODCACHE", "GOFLAGS")
		if err != nil {
			return nil, err
		}
		if root = env["GOMODCACHE"]; root == "" {
			return nil, errkind.Mark(errkind.BadInput, errors.New("go env GOMODCACHE is empty: set GOMODCACHE or GOPATH to an absolute directory"))
		}
		rw = rw || hasFlag(env["GOFLAGS"], "-modcacherw")
	} else {
		rw = rw || hasFlag(os.Getenv("GOFLAGS"), "-modcacherw")
	}
	if !filepath.IsAbs(root) {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("GOMODCACHE %q is a relative path, which cmd/go refuses too: set it to an absolute directory, e.g. GOMODCACHE=$PWD/%s", root, root))
	}
	in, err := readInputs(opts.GoSumFiles, log)
	if err != nil {
		return nil, err
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := cmp.Or(opts.Concurrency, DefaultConcurrency)
	w := &warmer{
		root:     root,
		src:      opts.Source,
		extract:  opts.Extract,
		rw:       rw,
		timeout:  opts.Timeout,
		attempts: cmp.Or(opts.Attempts, 3),
		log:      log,
		skip:     opts.Skip,
		sums:     in.sums,
		cpu:      make(chan struct{}, runtime.GOMAXPROCS(0)),
		zipSem:   make(chan struct{}, n),
		modSem:   make(chan struct{}, n),
		infoSem:  make(chan struct{}, n),
		fsSem:    make(chan struct{}, runtime.GOMAXPROCS(0)),
		recs:     map[module.Version]*record{},
		mods:     map[module.Version]*modOnce{},
		zips:     map[module.Version]bool{},
		cancel:   cancel,
	}
	w.prog = newProgress(opts.Progress, cmp.Or(opts.ProgressInterval, 5*time.Second))
	w.prog.start()

	for _, p := range in.projects {
		w.warnToolchain(p)
		for _, m := range p.speculativeDownloads() {
			w.startZip(wctx, m, false)
		}
		g, err := loadGraph(wctx, p, w.readMod)
		if err != nil && wctx.Err() == nil {
			log.Debug("module graph loaded with errors", "file", p.file, "error", err)
		}
		for _, e := range g.problems {
			w.warn(e.Error())
		}
		for _, m := range g.downloads() {
			w.startZip(wctx, m, false)
		}
		// `go list -m all` offline needs the .info of every module in
		// the build list, which `go mod download` leaves out for the
		// modules it does not download: warm adds those small files.
		for _, m := range g.buildList() {
			if a := p.replacement(m); a.Version != "" {
				w.startInfo(wctx, a)
			}
		}
	}
	for _, s := range in.lineByLine {
		w.startSum(wctx, s, false)
	}
	if opts.AllGoSum {
		for _, s := range in.all {
			w.startSum(wctx, s, true)
		}
	}
	w.wg.Wait()
	w.prog.stop()
	return w.summary(ctx, start, describe(opts.Source))
}

// hasFlag reports whether the GOFLAGS value goflags sets the boolean
// flag (-name, --name, -name=true; the last setting wins, as in cmd/go).
func hasFlag(goflags, flag string) bool {
	name := strings.TrimLeft(flag, "-")
	set := false
	for _, f := range strings.Fields(goflags) {
		n, v, hasV := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if n != name {
			continue
		}
		b, err := strconv.ParseBool(v)
		set = !hasV || (err == nil && b)
	}
	return set
}

// warnToolchain warns when the go or toolchain line asks for a newer Go
// than this process was built with: cmd/go with GOTOOLCHAIN=auto then
// downloads golang.org/toolchain, which warm does not fetch (its checksum
// is in the checksum database, not in go.sum).
func (w *warmer) warnToolchain(p *project) {
	want := p.goVersion
	if p.toolchain != "" {
		want = strings.TrimPrefix(p.toolchain, "go")
	}
	if want == "" || !strings.HasPrefix(runtime.Version(), "go") {
		return
	}
	if version.Compare("go"+want, version.Lang(runtime.Version())) > 0 && version.Compare("go"+want, runtime.Version()) > 0 {
		w.warn(fmt.Sprintf("%s asks for Go %s, newer than warm's %s: cmd/go may switch toolchains (GOTOOLCHAIN) and download golang.org/toolchain, which warm does not fetch", p.file, want, runtime.Version()))
	}
}

// record is what happened to one module version.
type record struct {
	fetched  bool
	bytes    int64
	dur      time.Duration
	zip      bool
	optional bool
	err      error
	skipped  string
}

// warmer holds what the workers share.
type warmer struct {
	root     string
	src      Source
	extract  bool
	rw       bool
	timeout  time.Duration
	attempts int
	log      hclog.Logger
	skip     func(string) (string, bool)
	sums     map[string]*Sum
	prog     *progress
	// cpu bounds the zips hashed (and extracted) at once to the CPUs:
	// fetching waits on the network and runs at Concurrency, while
	// inflating, hashing and creating files is CPU and disk bound, and
	// more of it at once only adds scheduler and file-system contention.
	cpu chan struct{}
	// zipSem, modSem and infoSem bound the zips, the go.mod files and
	// the .info files of modules not downloaded in flight;
	// apart, so that the small go.mod fetches the graph waits for never
	// queue behind zips.
	zipSem, modSem, infoSem chan struct{}
	fsSem                   chan struct{}
	dirs                    sync.Map // directories made
	wg                      sync.WaitGroup
	cancel                  context.CancelFunc

	mu       sync.Mutex
	recs     map[module.Version]*record
	mods     map[module.Version]*modOnce
	zips     map[module.Version]bool
	warnings []string
	localErr error
}

type modOnce struct {
	done chan struct{}
	data []byte
	err  error
}

func (w *warmer) warn(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Contains(w.warnings, msg) {
		w.warnings = append(w.warnings, msg)
		w.log.Warn(msg)
	}
}

// rec returns m's record, creating it.
func (w *warmer) rec(m module.Version) *record {
	r := w.recs[m]
	if r == nil {
		r = &record{optional: true}
		w.recs[m] = r
	}
	return r
}

// note records the outcome of one part of m's warm.
func (w *warmer) note(m module.Version, optional bool, fetched bool, n int64, d time.Duration, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.rec(m)
	r.optional = r.optional && optional
	r.fetched = r.fetched || fetched
	r.bytes += n
	r.dur = max(r.dur, d)
	if err != nil && r.err == nil {
		r.err = err
	}
	if err != nil && w.localErr == nil && classify(err) == errkind.Local {
		// The cache itself is at fault (not writable, disk full): every
		// other module would fail alike, so stop with one error.
		w.localErr = err
		w.cancel()
	}
}

// skipped reports whether m is skipped, recording why.
func (w *warmer) skipped(m module.Version) bool {
	if w.skip == nil {
		return false
	}
	reason, ok := w.skip(m.Path)
	if ok {
		w.mu.Lock()
		r := w.rec(m)
		r.skipped = reason
		w.mu.Unlock()
	}
	return ok
}

// fsOp runs f, which creates or renames files, holding a slot of the
// file-system bound: many goroutines creating entries in one directory
// (cache/download/github.com/...) contend for its lock, and the kernel
// spends more CPU spinning on it than creating (measured: mkdir and open
// were 1.3 s of caddy's 4 s of CPU at 64 at once).
// Its failures are local (the module cache's).
func (w *warmer) fsOp(ctx context.Context, f func() error) error {
	return w.acquire(ctx, w.fsSem, func() error { return local(f()) })
}

// mkdir creates dir and its parents once per warm, remembering whether
// this run made it.
func (w *warmer) mkdir(dir string) error {
	if _, ok := w.dirs.Load(dir); ok {
		return nil
	}
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	w.dirs.Store(dir, statErr != nil)
	return nil
}

// madeDir reports whether this run created dir.
func (w *warmer) madeDir(dir string) bool {
	made, _ := w.dirs.Load(dir)
	return made == true
}

// acquire runs f holding a slot of sem, or returns ctx's error.
func (w *warmer) acquire(ctx context.Context, sem chan struct{}, f func() error) error {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-sem }()
	return f()
}

// goEnv returns the values of `go env NAME...`.
func goEnv(ctx context.Context, names ...string) (map[string]string, error) {
	out, err := exec.CommandContext(ctx, "go", append([]string{"env", "-json"}, names...)...).Output()
	if err != nil {
		return nil, errkind.Mark(errkind.Local, fmt.Errorf("go env %s (set GOMODCACHE explicitly, or put go on PATH): %w", strings.Join(names, " "), err))
	}
	env := map[string]string{}
	if err := json.Unmarshal(out, &env); err != nil {
		return nil, fmt.Errorf("go env -json: %w", err)
	}
	return env, nil
}

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
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

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
			log.Warn("module graph loaded with errors", "file", p.file, "error", err)
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

// startSum warms the file of one go.sum line.
func (w *warmer) startSum(ctx context.Context, s *Sum, optional bool) {
	m := module.Version{Path: s.Path, Version: s.Version}
	if !s.GoMod {
		w.startZip(ctx, m, optional)
		return
	}
	w.mu.Lock()
	_, done := w.mods[m]
	w.mu.Unlock()
	if done {
		return
	}
	w.wg.Go(func() {
		if _, err := w.modFile(ctx, m, optional); err != nil {
			w.log.Debug("go.mod", "module", m, "error", err)
		}
	})
}

// startInfo fetches m's .info when it is not cached, best-effort.
func (w *warmer) startInfo(ctx context.Context, m module.Version) {
	w.mu.Lock()
	if w.zips[m] {
		w.mu.Unlock()
		return
	}
	w.zips[m] = true // its .info is taken care of
	w.mu.Unlock()
	e, err := newEntry(w.root, m)
	if err != nil || validInfoFile(e.base+".info", m.Version) {
		return
	}
	if w.skip != nil {
		if _, ok := w.skip(m.Path); ok {
			return
		}
	}
	w.prog.addTotal(1)
	w.wg.Go(func() {
		defer w.prog.done()
		t0 := time.Now()
		var info []byte
		err := w.acquire(ctx, w.modSem, func() error {
			var err error
			if info, err = w.fetchBytes(ctx, e.proxyPath(".info"), 1<<20); err == nil {
				err = validInfo(info, m.Version)
			}
			return err
		})
		if err == nil {
			err = w.fsOp(ctx, func() error {
				if err := w.mkdir(e.vdir); err != nil {
					return err
				}
				return writeAtomic(e.base+".info", info)
			})
		}
		if err != nil {
			err = fmt.Errorf("info: %w", err)
		}
		w.note(m, true, true, int64(len(info)), time.Since(t0), err)
	})
}

// hasFlag reports whether the GOFLAGS value goflags holds flag.
func hasFlag(goflags, flag string) bool {
	for _, f := range strings.Fields(goflags) {
		if f == flag || f == "-"+flag || strings.HasPrefix(f, flag+"=") && f != flag+"=false" {
			return true
		}
	}
	return false
}

// inputs are the parsed go.sum files and the graphs to load.
type inputs struct {
	sums     map[string]*Sum // "path@version" and "path@version/go.mod"
	projects []*project
	// lineByLine are the lines of go.sum files with no go.mod or go.work
	// next to them: warmed as listed.
	lineByLine []*Sum
	// all are every line, for AllGoSum.
	all []*Sum
}

// sumKey is the key of a go.sum line in inputs.sums.
func sumKey(m module.Version, gomod bool) string {
	if gomod {
		return m.Path + "@" + m.Version + "/go.mod"
	}
	return m.Path + "@" + m.Version
}

// readInputs reads the go.sum files, and the go.mod or go.work next to
// each with the go.sum files a workspace brings. Errors of all files are
// returned together.
func readInputs(files []string, log hclog.Logger) (*inputs, error) {
	in := &inputs{sums: map[string]*Sum{}}
	var errs []error
	seenProject := map[string]bool{}
	seenSum := map[string]bool{}
	addSums := func(file string, required bool) []*Sum {
		abs, _ := filepath.Abs(file)
		if seenSum[abs] {
			return nil
		}
		seenSum[abs] = true
		data, err := os.ReadFile(file)
		if err != nil {
			if required || !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, errkind.Mark(errkind.BadInput, fmt.Errorf("read go.sum: %w: name an existing file with --go-sum", err)))
			}
			return nil
		}
		sums, err := ParseGoSum(file, data)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		var out []*Sum
		for i := range sums {
			s := &sums[i]
			k := sumKey(module.Version{Path: s.Path, Version: s.Version}, s.GoMod)
			if prev := in.sums[k]; prev != nil {
				if prev.Hash != s.Hash {
					// cmd/go checks against the first h1 line it read
					// and fails on a mismatch, so the first line wins.
					log.Warn("conflicting go.sum lines: the first one is used, as cmd/go does",
						"module", s.Path, "version", s.Version, "used", prev.Where(), "ignored", s.Where())
				}
				continue
			}
			in.sums[k] = s
			in.all = append(in.all, s)
			out = append(out, s)
		}
		return out
	}
	for _, file := range files {
		c := companion(file)
		// A workspace need not have a go.work.sum: its modules' go.sum
		// files verify what they use.
		_, werr := os.Stat(c)
		lines := addSums(file, !(filepath.Base(file) == "go.work.sum" && werr == nil))
		if c == "" {
			in.lineByLine = append(in.lineByLine, lines...)
			continue
		}
		if _, err := os.Stat(c); err != nil {
			log.Warn("no go.mod or go.work next to the go.sum: warming every line of it", "go.sum", file, "missing", c)
			in.lineByLine = append(in.lineByLine, lines...)
			continue
		}
		abs, _ := filepath.Abs(c)
		if seenProject[abs] {
			continue
		}
		seenProject[abs] = true
		p, err := loadProject(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, gs := range p.goSums {
			addSums(gs, false)
		}
		in.projects = append(in.projects, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return in, nil
}

// companion returns the go.mod (or go.work) file that goes with a go.sum:
// for a go.sum, the go.work cmd/go would use in its directory (GOWORK, or
// the first go.work in it or a parent directory), else its go.mod.
func companion(goSum string) string {
	dir, base := filepath.Split(goSum)
	if base == "go.sum" {
		if w := findGoWork(dir); w != "" {
			return w
		}
	}
	switch {
	case base == "go.work.sum":
		return filepath.Join(dir, "go.work")
	case strings.HasSuffix(base, ".sum"):
		return filepath.Join(dir, strings.TrimSuffix(base, ".sum")+".mod")
	}
	return ""
}

// findGoWork returns the go.work cmd/go uses for a module in dir, or "".
func findGoWork(dir string) string {
	switch gw := os.Getenv("GOWORK"); gw {
	case "off":
		return ""
	case "":
	default:
		return gw
	}
	d, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		if fi, err := os.Stat(filepath.Join(d, "go.work")); err == nil && !fi.IsDir() {
			return filepath.Join(d, "go.work")
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
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
	// zipSem and modSem bound the zips and the go.mod files in flight;
	// apart, so that the small go.mod fetches the graph waits for never
	// queue behind zips.
	zipSem, modSem chan struct{}
	fsSem          chan struct{}
	dirs           sync.Map // directories made
	wg             sync.WaitGroup
	cancel         context.CancelFunc

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

// errSkipped is the graph's error for a go.mod of a skipped module that is
// not in the cache.
var errSkipped = errors.New("skipped")

// readMod is the graph's modReader.
func (w *warmer) readMod(ctx context.Context, m module.Version) ([]byte, error) {
	return w.modFile(ctx, m, false)
}

// modFile returns m's go.mod: from the cache when it matches go.sum, else
// fetched, verified and written. Each module version is done once.
func (w *warmer) modFile(ctx context.Context, m module.Version, optional bool) ([]byte, error) {
	w.mu.Lock()
	mo := w.mods[m]
	if mo != nil {
		w.mu.Unlock()
		select {
		case <-mo.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !optional {
			w.note(m, false, false, 0, 0, nil)
		}
		return mo.data, mo.err
	}
	mo = &modOnce{done: make(chan struct{})}
	w.mods[m] = mo
	w.mu.Unlock()
	w.prog.addTotal(1)
	defer w.prog.done()
	t0 := time.Now()
	fetched, data, err := w.ensureMod(ctx, m, optional)
	if err != nil && errors.Is(err, errSkipped) {
		mo.err = err
		close(mo.done)
		return nil, err
	}
	if err != nil {
		err = fmt.Errorf("go.mod: %w", err)
	}
	mo.data, mo.err = data, err
	close(mo.done)
	var n int64
	if fetched {
		n = int64(len(data))
	}
	w.note(m, optional, fetched, n, time.Since(t0), err)
	return data, err
}

// ensureMod reads m's cached go.mod, or fetches it.
func (w *warmer) ensureMod(ctx context.Context, m module.Version, optional bool) (bool, []byte, error) {
	e, err := newEntry(w.root, m)
	if err != nil {
		return false, nil, errkind.Mark(errkind.BadInput, err)
	}
	sum := w.sums[sumKey(m, true)]
	path := e.base + ".mod"
	if data, err := os.ReadFile(path); err == nil {
		if sum == nil || goModHash(data) == sum.Hash {
			return false, data, nil
		}
		w.log.Info("replacing a cached go.mod whose hash does not match go.sum", "module", m.Path, "version", m.Version)
	}
	if w.skipped(m) {
		return false, nil, errSkipped
	}
	var data []byte
	err = w.acquire(ctx, w.modSem, func() error {
		var err error
		data, err = w.fetchBytes(ctx, e.proxyPath(".mod"), modzip.MaxGoMod)
		return err
	})
	if err != nil {
		return true, nil, err
	}
	if sum == nil {
		// cmd/go refuses a go.mod without a go.sum line (it would check
		// the checksum database); the graph uses it, the cache does not
		// get an unverified file.
		w.warn(fmt.Sprintf("%s@%s/go.mod has no go.sum line: read for the module graph but not written to the cache (run 'go mod tidy')", m.Path, m.Version))
		return true, data, nil
	}
	if h := goModHash(data); h != sum.Hash {
		return true, nil, &MismatchError{Module: m.Path, Version: m.Version, File: "go.mod", Expected: sum.Hash, Where: sum.Where(), Received: h}
	}
	err = w.fsOp(ctx, func() error {
		if err := w.mkdir(e.vdir); err != nil {
			return err
		}
		return writeAtomic(path, data)
	})
	if err != nil {
		return true, nil, err
	}
	return true, data, nil
}

// fsOp runs f, which creates or renames files, holding a slot of the
// file-system bound: many goroutines creating entries in one directory
// (cache/download/github.com/...) contend for its lock, and the kernel
// spends more CPU spinning on it than creating (measured: mkdir and open
// were 1.3 s of caddy's 4 s of CPU at 64 at once).
func (w *warmer) fsOp(ctx context.Context, f func() error) error {
	return w.acquire(ctx, w.fsSem, f)
}

// mkdir creates dir and its parents once per warm.
func (w *warmer) mkdir(dir string) error {
	if _, ok := w.dirs.Load(dir); ok {
		return nil
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	w.dirs.Store(dir, true)
	return nil
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

// startZip warms m's zip, .info and .mod in the background, once.
func (w *warmer) startZip(ctx context.Context, m module.Version, optional bool) {
	w.mu.Lock()
	if w.zips[m] {
		if !optional {
			w.rec(m).optional = false
		}
		w.mu.Unlock()
		return
	}
	w.zips[m] = true
	w.rec(m).zip = true
	w.mu.Unlock()
	w.prog.addTotal(1)
	w.wg.Go(func() {
		defer w.prog.done()
		if w.skipped(m) {
			return
		}
		sum := w.sums[sumKey(m, false)]
		if sum == nil {
			w.mu.Lock()
			w.rec(m).skipped = "no go.sum line for its zip: cmd/go checks it against the checksum database; warm writes only what go.sum verifies (run 'go mod tidy')"
			w.mu.Unlock()
			return
		}
		var wg sync.WaitGroup
		wg.Go(func() { w.modFile(ctx, m, optional) })
		t0 := time.Now()
		fetched, n, err := w.warmZip(ctx, m, sum)
		w.note(m, optional, fetched, n, time.Since(t0), err)
		wg.Wait()
	})
}

// warmZip makes the zip, .ziphash and .info of m valid in the cache (and
// the extracted tree when asked). A restored cache costs a few stats: a
// zip whose .ziphash holds go.sum's hash is trusted, as cmd/go trusts it;
// one whose .ziphash disagrees is never.
func (w *warmer) warmZip(ctx context.Context, m module.Version, sum *Sum) (bool, int64, error) {
	e, err := newEntry(w.root, m)
	if err != nil {
		return false, 0, errkind.Mark(errkind.BadInput, err)
	}
	if w.zipHit(e, sum) {
		return false, 0, nil
	}
	if err := w.fsOp(ctx, func() error { return w.mkdir(e.vdir) }); err != nil {
		return false, 0, err
	}
	unlock, err := e.lock(ctx)
	if err != nil {
		return false, 0, fmt.Errorf("take cmd/go's lock: %w", err)
	}
	defer unlock()
	e.cleanTemps()
	if w.zipHit(e, sum) {
		return false, 0, nil
	}
	var (
		info    []byte
		infoErr error
		wg      sync.WaitGroup
	)
	if !validInfoFile(e.base+".info", m.Version) {
		wg.Go(func() {
			infoErr = w.acquire(ctx, w.modSem, func() error {
				var err error
				info, err = w.fetchBytes(ctx, e.proxyPath(".info"), 1<<20)
				if err == nil {
					err = validInfo(info, m.Version)
				}
				return err
			})
		})
	}
	fetched, n, zi, err := w.ensureZip(ctx, e, sum)
	wg.Wait()
	if err == nil && infoErr != nil {
		err = fmt.Errorf("info: %w", infoErr)
	}
	if err == nil && (info != nil || zi != nil) {
		err = w.fsOp(ctx, func() error {
			if info != nil {
				if err := writeAtomic(e.base+".info", info); err != nil {
					return err
				}
			}
			if zi != nil {
				return e.install(zi.tmpZip, zi.xtmp, zi.hash, w.rw)
			}
			return nil
		})
	}
	if zi != nil {
		zi.cleanup()
	}
	if err != nil && !errors.Is(err, errZip) && !isMismatch(err) {
		err = fmt.Errorf("zip: %w", err)
	}
	return fetched || info != nil, n + int64(len(info)), err
}

func isMismatch(err error) bool {
	var me *MismatchError
	return errors.As(err, &me)
}

// zipHit reports whether the zip needs nothing: .ziphash equals go.sum's
// hash, the zip (or a complete extracted tree) is there, the .info is
// there, and the tree when extracting. Stats only: no hashing.
func (w *warmer) zipHit(e entry, sum *Sum) bool {
	zh, err := os.ReadFile(e.base + ".ziphash")
	if err != nil || strings.TrimSpace(string(zh)) != sum.Hash {
		return false
	}
	if _, err := os.Stat(e.base + ".info"); err != nil {
		return false
	}
	_, zerr := os.Stat(e.base + ".zip")
	if w.extract {
		return e.dirComplete()
	}
	return zerr == nil || e.dirComplete()
}

func validInfoFile(path, version string) bool {
	data, err := os.ReadFile(path)
	return err == nil && validInfo(data, version) == nil
}

func validInfo(data []byte, version string) error {
	var info struct{ Version string }
	if err := json.Unmarshal(data, &info); err != nil {
		return errkind.Mark(errkind.Integrity, fmt.Errorf("malformed .info from the upstream: %v", err))
	}
	if info.Version != version {
		return errkind.Mark(errkind.Integrity, fmt.Errorf(".info from the upstream names version %q, want %q", info.Version, version))
	}
	return nil
}

// zipInstall is a verified zip (and extracted tree) waiting to be put in
// place by entry.install.
type zipInstall struct {
	tmpZip, xtmp, hash string
}

// cleanup removes what install did not move into place.
func (z *zipInstall) cleanup() {
	if z.tmpZip != "" {
		os.Remove(z.tmpZip)
	}
	if z.xtmp != "" {
		if _, err := os.Lstat(z.xtmp); err == nil {
			removeTree(z.xtmp)
		}
	}
}

// hashZip runs hashZip within the CPU bound.
func (w *warmer) hashZip(ctx context.Context, mod module.Version, zipPath, xdir string) (string, error) {
	var h string
	err := w.acquire(ctx, w.cpu, func() error {
		var err error
		h, err = hashZip(mod, zipPath, xdir, w.rw)
		return err
	})
	return h, err
}

// ensureZip, under the lock, keeps a cached zip whose .ziphash matches
// (extracting it when asked; the extraction hashes it again), or fetches
// the zip into a temporary file, checks, hashes (and extracts, in the
// same pass); the returned zipInstall puts it in place.
func (w *warmer) ensureZip(ctx context.Context, e entry, sum *Sum) (bool, int64, *zipInstall, error) {
	zipPath := e.base + ".zip"
	zh, _ := os.ReadFile(e.base + ".ziphash")
	if strings.TrimSpace(string(zh)) == sum.Hash {
		if _, err := os.Stat(zipPath); err == nil {
			if !w.extract || e.dirComplete() {
				return false, 0, nil, nil
			}
			zi := &zipInstall{hash: sum.Hash}
			var err error
			if zi.xtmp, err = e.tempDir(); err != nil {
				return false, 0, nil, err
			}
			h, err := w.hashZip(ctx, e.mod, zipPath, zi.xtmp)
			if err == nil && h == sum.Hash {
				return false, 0, zi, nil
			}
			zi.cleanup()
			w.log.Info("replacing a cached zip that fails verification", "module", e.mod.Path, "version", e.mod.Version, "hash", h, "error", err)
		} else if e.dirComplete() {
			return false, 0, nil, nil
		}
	}
	var f *os.File
	err := w.fsOp(ctx, func() error {
		var err error
		f, err = os.CreateTemp(e.vdir, filepath.Base(e.base)+".zip"+tempMarker+"*.tmp")
		return err
	})
	if err != nil {
		return true, 0, nil, err
	}
	zi := &zipInstall{tmpZip: f.Name(), hash: sum.Hash}
	var n int64
	err = w.acquire(ctx, w.zipSem, func() error {
		var err error
		n, err = w.fetchFile(ctx, e.proxyPath(".zip"), f)
		return err
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && w.extract {
		zi.xtmp, err = e.tempDir()
	}
	if err != nil {
		zi.cleanup()
		return true, n, nil, err
	}
	h, err := w.hashZip(ctx, e.mod, zi.tmpZip, zi.xtmp)
	if err == nil && h != sum.Hash {
		err = &MismatchError{Module: e.mod.Path, Version: e.mod.Version, File: "zip", Expected: sum.Hash, Where: sum.Where(), Received: h}
	}
	if err != nil {
		zi.cleanup()
		return true, n, nil, err
	}
	return true, n, zi, nil
}

// summary builds the Summary and the error from the records.
func (w *warmer) summary(ctx context.Context, start time.Time, upstream string) (*Summary, error) {
	sum := &Summary{
		Upstream: upstream,
		ModCache: w.root,
		Slowest:  []Timing{},
		Skipped:  []Skipped{},
		Failures: []Failure{},
		Warnings: slices.Clone(w.warnings),
	}
	if sum.Warnings == nil {
		sum.Warnings = []string{}
	}
	mods := make([]module.Version, 0, len(w.recs))
	for m := range w.recs {
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b module.Version) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), cmpVersion(a.Version, b.Version))
	})
	var errs []error
	for _, m := range mods {
		r := w.recs[m]
		if r.skipped != "" {
			sum.Skipped = append(sum.Skipped, Skipped{Module: m.Path, Version: m.Version, Reason: r.skipped})
			continue
		}
		sum.Modules++
		if r.zip {
			sum.Zips++
		}
		sum.Bytes += r.bytes
		switch {
		case r.err != nil && r.optional && isNotFound(r.err):
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("%s@%s (a go.sum line the build does not need): %v", m.Path, m.Version, r.err))
			sum.Hits++ // nothing to warm: counted as done
		case r.err != nil:
			kind := classify(r.err)
			if kind == errkind.Canceled || (w.localErr != nil && kind != errkind.Local && ctx.Err() == nil) {
				continue // the cause is reported once, below
			}
			if w.localErr != nil && kind == errkind.Local && r.err != w.localErr {
				continue
			}
			msg := describeErr(r.err)
			errs = append(errs, errkind.Mark(kind, fmt.Errorf("%s@%s: %s", m.Path, m.Version, msg)))
			sum.Failures = append(sum.Failures, Failure{Module: m.Path, Version: m.Version, Kind: kind.String(), Error: msg})
		case r.fetched:
			sum.Fetched++
		default:
			sum.Hits++
		}
		sum.Slowest = append(sum.Slowest, Timing{Module: m.Path, Version: m.Version, Seconds: r.dur.Seconds(), Bytes: r.bytes})
	}
	slices.SortStableFunc(sum.Slowest, func(a, b Timing) int { return cmp.Compare(b.Seconds, a.Seconds) })
	sum.Slowest = sum.Slowest[:min(5, len(sum.Slowest))]
	slices.SortStableFunc(errs, func(a, b error) int { return kindRank(errkind.Of(a)) - kindRank(errkind.Of(b)) })
	slices.SortStableFunc(sum.Failures, func(a, b Failure) int { return kindRankName(a.Kind) - kindRankName(b.Kind) })
	sum.Failed = len(sum.Failures)
	sum.Seconds = time.Since(start).Seconds()
	if ctx.Err() != nil {
		sum.Failures = []Failure{}
		sum.Failed = 0
		return sum, errkind.Mark(errkind.Canceled, fmt.Errorf("warm canceled after %.1fs: %w", sum.Seconds, context.Cause(ctx)))
	}
	if w.localErr != nil {
		return sum, errkind.Mark(errkind.Local, localFault(w.root, w.localErr))
	}
	return sum, errors.Join(errs...)
}

// localFault explains a fault of the module cache: what, where, the fix.
func localFault(root string, err error) error {
	fix := "make it writable by this user, or point GOMODCACHE at a writable directory"
	switch {
	case errors.Is(err, errNoSpace):
		fix = "free space on its file system, or point GOMODCACHE at a larger one"
	case errors.Is(err, errReadOnlyFS):
		fix = "its file system is read-only: point GOMODCACHE at a writable directory"
	}
	return fmt.Errorf("module cache %s: %s (a local fault, not the upstream: no network diagnosis): %w", root, fix, err)
}

func kindRank(k errkind.Kind) int {
	switch k {
	case errkind.Integrity:
		return 0
	case errkind.Unreachable:
		return 1
	case errkind.Answered:
		return 2
	}
	return 3
}

func kindRankName(s string) int {
	for _, k := range []errkind.Kind{errkind.Integrity, errkind.Unreachable, errkind.Answered} {
		if k.String() == s {
			return kindRank(k)
		}
	}
	return 3
}

// describe names the source for the summary.
func describe(s Source) string {
	if st, ok := s.(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprintf("%T", s)
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

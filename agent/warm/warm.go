// Package warm owns warming the Go module cache from go.sum files: it reads
// go.sum and go.work.sum, fetches every listed .mod, .zip and .info
// concurrently from a Source (the upstream with the agent's identity and
// failover, or a running agent), verifies each against its h1 hash, and
// writes it into GOMODCACHE in exactly cmd/go's layout, holding cmd/go's
// lock files and renaming complete files into place, so that a concurrent
// go command or a kill at any moment never sees a corrupt entry and a later
// `GOPROXY=off go build` needs no network.
package warm

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// DefaultConcurrency is the number of module versions warmed at once when
// Options.Concurrency is 0. Chosen by measurement, not by GOMAXPROCS
// (`goproxy-bench warm --fixtures caddy --delays 50ms --modes
// warm-noextract --sweep 4,8,16,32,64`, 2 cores: 8.2 s at 4, 6.9 s at 8,
// 6.5 s at 16, 6.3 s at 32, 5.2 s at 64 with 33 MB RSS instead of 24 MB):
// past 16 the warm is bound by hashing, not by the network.
const DefaultConcurrency = 32

// Options configure Run.
type Options struct {
	// Source serves the GOPROXY protocol files. Required.
	Source Source
	// GoSumFiles are the go.sum / go.work.sum files to read; their lines
	// are merged and deduplicated. Required. A go.mod (or go.work) next to
	// each, named as cmd/go names it (go.sum → go.mod, go.work.sum →
	// go.work, NAME.go.sum → NAME.go.mod), is read for replace directives.
	GoSumFiles []string
	// ModCache is the module cache root; empty means `go env GOMODCACHE`.
	ModCache string
	// Concurrency is the number of module versions warmed at once; 0 means
	// DefaultConcurrency.
	Concurrency int
	// Extract also writes the extracted, read-only <module>@<version>/
	// trees; without it the cache holds the download cache only, which
	// cmd/go extracts on demand.
	Extract bool
	// Timeout bounds each fetch attempt; 0 means no bound beyond ctx.
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
	// Hits is the number of module versions already valid in the cache.
	Hits int `json:"hits"`
	// Fetched is the number of module versions that needed a fetch.
	Fetched int `json:"fetched"`
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
	// Kind is "integrity", "unreachable" or "other".
	Kind  string `json:"kind"`
	Error string `json:"error"`
}

// MismatchError is a fetched file whose hash differs from go.sum.
// Nothing is written for the module version.
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

// item is one module version to warm.
type item struct {
	mod    module.Version
	modSum *Sum // first /go.mod line, if any
	zipSum *Sum // first zip line, if any
}

// Run warms opts.ModCache from opts.GoSumFiles. A malformed or unreadable
// go.sum is a bad-input error and nothing is fetched. Otherwise every
// module version is attempted; each failure is reported in the Summary and
// in the returned error (errors.Join; integrity failures first, marked
// errkind.Integrity, then unreachable ones, marked errkind.Unreachable).
// The Summary is returned whenever the warm started.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	start := time.Now()
	if opts.Source == nil {
		return nil, errors.New("warm: no source")
	}
	if len(opts.GoSumFiles) == 0 {
		return nil, errkind.Mark(errkind.BadInput, errors.New("no go.sum file given: name one with --go-sum"))
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	root := opts.ModCache
	if root == "" {
		var err error
		if root, err = goEnvModCache(ctx); err != nil {
			return nil, err
		}
	}
	items, skipped, err := load(opts.GoSumFiles, opts.Skip, log)
	if err != nil {
		return nil, err
	}
	w := &warmer{
		root:     root,
		src:      opts.Source,
		extract:  opts.Extract,
		timeout:  opts.Timeout,
		attempts: cmp.Or(opts.Attempts, 3),
		log:      log,
		cpu:      make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
	n := cmp.Or(opts.Concurrency, DefaultConcurrency)
	prog := newProgress(opts.Progress, cmp.Or(opts.ProgressInterval, 5*time.Second), len(items))
	prog.start()

	results := make([]result, len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, len(items)) {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				r := w.warmOne(ctx, items[i], prog)
				r.dur = time.Since(t0)
				results[i] = r
				prog.done()
			}
		})
	}
	for i := range items {
		next <- i
	}
	close(next)
	wg.Wait()
	prog.stop()

	sum := &Summary{
		Modules:  len(items),
		Upstream: describe(opts.Source),
		ModCache: root,
		Skipped:  skipped,
		Slowest:  []Timing{},
		Failures: []Failure{},
	}
	if sum.Skipped == nil {
		sum.Skipped = []Skipped{}
	}
	var errs []error
	for i, r := range results {
		sum.Bytes += r.bytes
		it := items[i]
		switch {
		case r.err != nil:
			kind := classify(r.err)
			err := errkind.Mark(kind, fmt.Errorf("%s@%s: %w", it.mod.Path, it.mod.Version, r.err))
			errs = append(errs, err)
			sum.Failures = append(sum.Failures, Failure{Module: it.mod.Path, Version: it.mod.Version, Kind: kind.String(), Error: r.err.Error()})
		case r.fetched:
			sum.Fetched++
		default:
			sum.Hits++
		}
		sum.Slowest = append(sum.Slowest, Timing{Module: it.mod.Path, Version: it.mod.Version, Seconds: r.dur.Seconds(), Bytes: r.bytes})
	}
	slices.SortStableFunc(sum.Slowest, func(a, b Timing) int { return cmp.Compare(b.Seconds, a.Seconds) })
	sum.Slowest = sum.Slowest[:min(5, len(sum.Slowest))]
	slices.SortStableFunc(errs, func(a, b error) int { return kindRank(errkind.Of(a)) - kindRank(errkind.Of(b)) })
	slices.SortStableFunc(sum.Failures, func(a, b Failure) int { return kindRankName(a.Kind) - kindRankName(b.Kind) })
	sum.Seconds = time.Since(start).Seconds()
	if err := ctx.Err(); err != nil && len(errs) > 0 {
		errs = append([]error{fmt.Errorf("warm interrupted: %w", err)}, errs...)
	}
	return sum, errors.Join(errs...)
}

func kindRank(k errkind.Kind) int {
	switch k {
	case errkind.Integrity:
		return 0
	case errkind.Unreachable:
		return 1
	}
	return 2
}

func kindRankName(s string) int {
	for _, k := range []errkind.Kind{errkind.Integrity, errkind.Unreachable} {
		if k.String() == s {
			return kindRank(k)
		}
	}
	return 2
}

// classify returns the kind of a module's failure.
func classify(err error) errkind.Kind {
	if k := errkind.Of(err); k != errkind.Other {
		return k
	}
	var me *MismatchError
	switch {
	case errors.As(err, &me), errors.Is(err, errZip), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errTooLarge):
		return errkind.Integrity
	case isNotFound(err), isTemporary(err), isNetwork(err):
		return errkind.Unreachable
	}
	return errkind.Other
}

// describe names the source for the summary.
func describe(s Source) string {
	if st, ok := s.(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprintf("%T", s)
}

// goEnvModCache returns `go env GOMODCACHE`.
func goEnvModCache(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE (set the module cache explicitly, or put go on PATH): %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errkind.Mark(errkind.BadInput, errors.New("go env GOMODCACHE is empty: set GOMODCACHE or GOPATH"))
	}
	return dir, nil
}

// load reads, parses and merges the go.sum files. Parse errors of all
// files are returned together.
func load(files []string, skip func(string) (string, bool), log hclog.Logger) ([]*item, []Skipped, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	var (
		errs    []error
		byMod   = map[module.Version]*item{}
		order   []*item
		replace []*modfile.Replace
		where   = map[*modfile.Replace]string{}
	)
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, errkind.Mark(errkind.BadInput, fmt.Errorf("read go.sum: %w: name an existing file with --go-sum", err)))
			continue
		}
		sums, err := ParseGoSum(file, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range companionReplaces(file, log) {
			replace = append(replace, r)
			where[r] = companion(file)
		}
		for _, s := range sums {
			mv := module.Version{Path: s.Path, Version: s.Version}
			it := byMod[mv]
			if it == nil {
				it = &item{mod: mv}
				byMod[mv] = it
				order = append(order, it)
			}
			slot := &it.zipSum
			if s.GoMod {
				slot = &it.modSum
			}
			switch {
			case *slot == nil:
				*slot = &s
			case (*slot).Hash != s.Hash:
				// cmd/go checks against the first h1 line it read and
				// fails on a mismatch, so the first line wins here too.
				log.Warn("conflicting go.sum lines: the first one is used, as cmd/go does",
					"module", s.Path, "version", s.Version, "used", (*slot).Where(), "ignored", s.Where())
			}
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	var (
		items   []*item
		skipped []Skipped
	)
	used := map[*modfile.Replace]bool{}
	reason := func(r *modfile.Replace) string {
		return fmt.Sprintf("replaced by local directory %s in %s: cmd/go reads it from disk, not from the module cache", r.New.Path, where[r])
	}
	for _, it := range order {
		if r := replacedBy(replace, it.mod); r != nil {
			used[r] = true
			skipped = append(skipped, Skipped{Module: it.mod.Path, Version: it.mod.Version, Reason: reason(r)})
			continue
		}
		if skip != nil {
			if reason, ok := skip(it.mod.Path); ok {
				skipped = append(skipped, Skipped{Module: it.mod.Path, Version: it.mod.Version, Reason: reason})
				continue
			}
		}
		items = append(items, it)
	}
	// A local replacement usually has no go.sum line at all; it is
	// reported all the same, so that nobody wonders why it was not warmed.
	for _, r := range replace {
		if !used[r] {
			skipped = append(skipped, Skipped{Module: r.Old.Path, Version: r.Old.Version, Reason: reason(r)})
		}
	}
	// Zips first: the long fetches start early and the many small go.mod
	// fetches fill the gaps at the end.
	slices.SortStableFunc(items, func(a, b *item) int {
		return boolRank(a.zipSum == nil) - boolRank(b.zipSum == nil)
	})
	return items, skipped, nil
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// companion returns the go.mod (or go.work) file that goes with a go.sum.
func companion(goSum string) string {
	dir, base := filepath.Split(goSum)
	switch {
	case base == "go.work.sum":
		return filepath.Join(dir, "go.work")
	case strings.HasSuffix(base, ".sum"):
		return filepath.Join(dir, strings.TrimSuffix(base, ".sum")+".mod")
	}
	return ""
}

// companionReplaces returns the replace directives of goSum's go.mod or
// go.work whose target is a local directory. A missing or unparsable
// companion is not an error: cmd/go would report it, warm only warns.
func companionReplaces(goSum string, log hclog.Logger) []*modfile.Replace {
	name := companion(goSum)
	if name == "" {
		return nil
	}
	data, err := os.ReadFile(name)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot read the go.mod next to go.sum; replace directives not applied", "file", name, "error", err)
		}
		return nil
	}
	var reps []*modfile.Replace
	if filepath.Base(name) == "go.work" {
		wf, err := modfile.ParseWork(name, data, nil)
		if err != nil {
			log.Warn("cannot parse go.work; replace directives not applied", "error", err)
			return nil
		}
		reps = wf.Replace
	} else {
		mf, err := modfile.Parse(name, data, nil)
		if err != nil {
			log.Warn("cannot parse go.mod; replace directives not applied", "error", err)
			return nil
		}
		reps = mf.Replace
	}
	var local []*modfile.Replace
	for _, r := range reps {
		if r.New.Version == "" {
			local = append(local, r)
		}
	}
	return local
}

func replacedBy(reps []*modfile.Replace, mv module.Version) *modfile.Replace {
	for _, r := range reps {
		if r.Old.Path == mv.Path && (r.Old.Version == "" || r.Old.Version == mv.Version) {
			return r
		}
	}
	return nil
}

// warmer holds what the workers share.
type warmer struct {
	root     string
	src      Source
	extract  bool
	timeout  time.Duration
	attempts int
	log      hclog.Logger
	// cpu bounds the zips hashed (and extracted) at once to the CPUs:
	// fetching waits on the network and runs at Concurrency, while
	// inflating, hashing and creating files is CPU and disk bound, and
	// more of it at once only adds scheduler and file-system contention.
	cpu chan struct{}
}

// hashZip runs hashZip within the CPU bound.
func (w *warmer) hashZip(ctx context.Context, mod module.Version, zipPath, xdir string) (string, error) {
	select {
	case w.cpu <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-w.cpu }()
	return hashZip(mod, zipPath, xdir)
}

// result is the outcome for one module version.
type result struct {
	fetched bool
	bytes   int64
	dur     time.Duration
	err     error
}

// warmOne warms one module version under cmd/go's version lock: the .mod,
// and for a zip line the .zip (verified, and extracted when asked) and the
// .info, fetched concurrently.
func (w *warmer) warmOne(ctx context.Context, it *item, prog *progress) result {
	e, err := newEntry(w.root, it.mod)
	if err != nil {
		return result{err: err}
	}
	unlock, err := e.lock(ctx)
	if err != nil {
		return result{err: fmt.Errorf("take cmd/go's lock: %w", err)}
	}
	defer unlock()
	e.cleanTemps()

	// Every part is fetched and verified before anything is written, so a
	// failure of any part (a mismatch, a 404) writes nothing for the
	// module version.
	var (
		fetched atomic.Bool
		bytes   atomic.Int64
		mu      sync.Mutex
		errs    []error
		wg      sync.WaitGroup
		modData []byte
		info    []byte
		zi      *zipInstall
	)
	do := func(what string, f func() (fetched bool, n int64, err error)) {
		wg.Go(func() {
			f, n, err := f()
			if f {
				fetched.Store(true)
			}
			bytes.Add(n)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
				mu.Unlock()
			}
		})
	}
	do("go.mod", func() (f bool, n int64, err error) {
		f, modData, err = w.ensureMod(ctx, e, it.modSum, prog)
		return f, int64(len(modData)), err
	})
	if it.zipSum != nil {
		do("info", func() (f bool, n int64, err error) {
			f, info, err = w.ensureInfo(ctx, e, prog)
			return f, int64(len(info)), err
		})
		do("zip", func() (f bool, n int64, err error) {
			f, n, zi, err = w.ensureZip(ctx, e, it.zipSum, prog)
			return f, n, err
		})
	}
	wg.Wait()
	if len(errs) == 0 {
		if modData != nil {
			errs = append(errs, writeAtomic(e.base+".mod", modData))
		}
		if info != nil {
			errs = append(errs, writeAtomic(e.base+".info", info))
		}
		if zi != nil {
			errs = append(errs, e.install(zi.tmpZip, zi.xtmp, zi.hash))
		}
	}
	if zi != nil {
		zi.cleanup()
	}
	return result{fetched: fetched.Load(), bytes: bytes.Load(), err: errors.Join(errs...)}
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

// ensureMod checks <v>.mod: kept when its hash matches go.sum (or when
// go.sum has no /go.mod line for it), else fetched and verified; it
// returns the data to write, nil for a hit.
func (w *warmer) ensureMod(ctx context.Context, e entry, sum *Sum, prog *progress) (bool, []byte, error) {
	path := e.base + ".mod"
	if data, err := os.ReadFile(path); err == nil {
		if sum == nil {
			return false, nil, nil
		}
		if h, _ := goModHash(data); h == sum.Hash {
			return false, nil, nil
		}
		w.log.Info("replacing a cached go.mod whose hash does not match go.sum", "module", e.mod.Path, "version", e.mod.Version)
	}
	data, err := w.fetchBytes(ctx, e.proxyPath(".mod"), modzip.MaxGoMod, prog)
	if err != nil {
		return true, nil, err
	}
	if sum != nil {
		h, err := goModHash(data)
		if err != nil {
			return true, nil, err
		}
		if h != sum.Hash {
			return true, nil, &MismatchError{Module: e.mod.Path, Version: e.mod.Version, File: "go.mod", Expected: sum.Hash, Where: sum.Where(), Received: h}
		}
	}
	return true, data, nil
}

// ensureInfo checks <v>.info, a JSON object naming the version; it
// returns the data to write, nil for a hit.
func (w *warmer) ensureInfo(ctx context.Context, e entry, prog *progress) (bool, []byte, error) {
	if data, err := os.ReadFile(e.base + ".info"); err == nil && validInfo(data, e.mod.Version) == nil {
		return false, nil, nil
	}
	data, err := w.fetchBytes(ctx, e.proxyPath(".info"), 1<<20, prog)
	if err != nil {
		return true, nil, err
	}
	if err := validInfo(data, e.mod.Version); err != nil {
		return true, nil, err
	}
	return true, data, nil
}

func validInfo(data []byte, version string) error {
	var info struct{ Version string }
	if err := json.Unmarshal(data, &info); err != nil {
		return fmt.Errorf("malformed .info from the upstream: %v", err)
	}
	if info.Version != version {
		return fmt.Errorf(".info from the upstream names version %q, want %q", info.Version, version)
	}
	return nil
}

// ensureZip checks the zip, its .ziphash and (when extracting) the
// extracted tree. A cached zip is a hit only when .ziphash holds go.sum's
// hash and the zip's own hash matches it; an extracted tree without a zip
// is a hit when complete by cmd/go's rules. Anything else is fetched into
// a temporary file, checked, hashed (and extracted into a temporary
// directory in the same pass); the returned zipInstall puts it in place.
func (w *warmer) ensureZip(ctx context.Context, e entry, sum *Sum, prog *progress) (bool, int64, *zipInstall, error) {
	zipPath, hashPath := e.base+".zip", e.base+".ziphash"
	zh, _ := os.ReadFile(hashPath)
	if strings.TrimSpace(string(zh)) == sum.Hash {
		dirOK := e.dirComplete()
		if _, err := os.Stat(zipPath); err == nil {
			zi := &zipInstall{hash: sum.Hash}
			if w.extract && !dirOK {
				var err error
				if zi.xtmp, err = e.tempDir(); err != nil {
					return false, 0, nil, err
				}
			}
			h, err := w.hashZip(ctx, e.mod, zipPath, zi.xtmp)
			if err == nil && h == sum.Hash {
				if zi.xtmp == "" {
					return false, 0, nil, nil
				}
				return false, 0, zi, nil
			}
			zi.cleanup()
			w.log.Info("replacing a cached zip that fails verification", "module", e.mod.Path, "version", e.mod.Version, "hash", h, "error", err)
		} else if dirOK {
			return false, 0, nil, nil
		}
	}

	f, err := os.CreateTemp(e.vdir, filepath.Base(e.base)+".zip"+tempMarker+"*.tmp")
	if err != nil {
		return true, 0, nil, err
	}
	zi := &zipInstall{tmpZip: f.Name(), hash: sum.Hash}
	n, err := w.fetchFile(ctx, e.proxyPath(".zip"), f, prog)
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

// tempDir creates the temporary directory the zip is extracted into; its
// name is one cmd/go also cleans up (<dir>.tmp-*, under the lock).
func (e entry) tempDir() (string, error) {
	if err := os.MkdirAll(filepath.Dir(e.xdir), 0o777); err != nil {
		return "", err
	}
	return os.MkdirTemp(filepath.Dir(e.xdir), filepath.Base(e.xdir)+".tmp-"+tempMarker[1:]+"*")
}

// install puts a verified zip (tmpZip; empty when the cached zip is kept)
// and extracted tree (xtmp; empty for none) in place. Order matters for a
// kill at any point: a stale tree is marked .partial before it is removed,
// old .ziphash and zip go before the new .ziphash is written, the new
// .ziphash before the new zip (cmd/go's order), the tree last, then the
// .partial marker goes.
func (e entry) install(tmpZip, xtmp, hash string) error {
	partial := e.base + ".partial"
	if _, err := os.Lstat(e.xdir); err == nil && (xtmp != "" || tmpZip != "") {
		if err := os.WriteFile(partial, nil, 0o666); err != nil {
			return err
		}
		if err := removeTree(e.xdir); err != nil {
			return fmt.Errorf("remove stale %s: %w", e.xdir, err)
		}
	}
	if tmpZip != "" {
		for _, p := range []string{e.base + ".ziphash", e.base + ".zip"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if err := writeAtomic(e.base+".ziphash", []byte(hash)); err != nil {
			return err
		}
		if err := os.Chmod(tmpZip, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmpZip, e.base+".zip"); err != nil {
			return err
		}
	}
	if xtmp != "" {
		makeReadOnly(xtmp)
		if err := os.Rename(xtmp, e.xdir); err != nil {
			removeTree(xtmp)
			return err
		}
	}
	if err := os.Remove(partial); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// errTooLarge is a body over the protocol's size limits.
var errTooLarge = errors.New("response too large")

// fetchBytes fetches a small file (.mod, .info) into memory.
func (w *warmer) fetchBytes(ctx context.Context, path string, limit int64, prog *progress) ([]byte, error) {
	var buf bytes.Buffer
	err := w.retry(ctx, path, func(ctx context.Context) error {
		buf.Reset()
		rc, err := w.src.Open(ctx, path)
		if err != nil {
			return err
		}
		defer rc.Close()
		n, err := buf.ReadFrom(io.LimitReader(prog.reader(rc), limit+1))
		if err == nil && n > limit {
			err = fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
		}
		return err
	})
	return buf.Bytes(), err
}

// fetchFile fetches a zip into f, starting over on each attempt.
func (w *warmer) fetchFile(ctx context.Context, path string, f *os.File, prog *progress) (int64, error) {
	var n int64
	err := w.retry(ctx, path, func(ctx context.Context) error {
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		rc, err := w.src.Open(ctx, path)
		if err != nil {
			return err
		}
		defer rc.Close()
		n, err = io.Copy(f, io.LimitReader(prog.reader(rc), modzip.MaxZipFile+1))
		if err == nil && n > modzip.MaxZipFile {
			err = fmt.Errorf("%w: module zip over %d bytes", errTooLarge, modzip.MaxZipFile)
		}
		return err
	})
	return n, err
}

// retry runs f until it succeeds, fails for good, or the attempts are
// used up, with jittered exponential backoff between attempts.
func (w *warmer) retry(ctx context.Context, what string, f func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if w.timeout > 0 {
			actx, cancel = context.WithTimeout(ctx, w.timeout)
		}
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || attempt >= w.attempts || !isTemporary(err) {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("truncated body: %w", err)
			}
			return err
		}
		d := time.Duration(float64(100*time.Millisecond<<(attempt-1)) * (0.5 + rand.Float64()))
		w.log.Debug("retrying fetch", "path", what, "attempt", attempt, "in", d, "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
	}
}

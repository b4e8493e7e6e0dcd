package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/modfile"

	"github.com/goproxy-setup/goproxy-setup/agent/warm"
)

func init() {
	register(warmBench{})
	register(warmChild{})
}

// warmBench compares the cache warmer with `go mod download` and `cp -r`.
type warmBench struct{}

func (warmBench) Name() string { return "warm" }
func (warmBench) Synopsis() string {
	return "warm vs `go mod download` vs `cp -r`, cold GOMODCACHE, local proxy with injected delay"
}

const warmBenchUsage = `Usage: goproxy-bench warm [flags]

Primes a local module proxy once from the real one (cached under
--cache-dir, so re-runs do not refetch), serves it on 127.0.0.1 with an
injected per-request delay, and times with a cold GOMODCACHE each time:
goproxy-setup's warm (with and without --extract), 'go mod download'
(GOSUMDB=off, GOFLAGS=-mod=mod) and 'cp -r' of the resulting caches.
Peak RSS is the child process's rusage maxrss.

Example:
  goproxy-bench warm --fixtures caddy,prometheus --delays 0ms,50ms
  goproxy-bench warm --fixtures caddy --delays 50ms --modes warm --sweep 8,16,32,64,128

Flags:
`

func (warmBench) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		fixtures, fixturesDir, delays, cacheDir, upstream, modes, sweep, workDir string
		runs, concurrency                                                        int
	)
	ucd, _ := os.UserCacheDir()
	fs := flag.NewFlagSet("warm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, warmBenchUsage); fs.PrintDefaults() }
	fs.StringVar(&fixtures, "fixtures", "caddy,prometheus", "fixture names: NAME.go.sum and NAME.go.mod in --fixtures-dir")
	fs.StringVar(&fixturesDir, "fixtures-dir", defaultFixturesDir(), "directory of the go.sum fixtures")
	fs.StringVar(&delays, "delays", "0ms,50ms", "per-request delays injected by the local proxy")
	fs.StringVar(&cacheDir, "cache-dir", filepath.Join(ucd, "goproxy-setup-bench"), "where the primed proxy is kept between runs")
	fs.StringVar(&workDir, "work-dir", "", "where the cold caches are made (default a temporary directory)")
	fs.StringVar(&upstream, "upstream", "", "module proxy to prime from (default: the first proxy of `go env GOPROXY`)")
	fs.StringVar(&modes, "modes", "go,warm,warm-noextract,floor", "what to time: go (go mod download), warm, warm-noextract, floor (CPU to inflate and hash the zips warm-noextract fetched), hit (warm on the warmed cache), cp")
	fs.StringVar(&sweep, "sweep", "", "also time warm at each of these concurrencies (comma-separated) to choose the default")
	fs.IntVar(&runs, "runs", 1, "runs of each measurement; the median is reported")
	fs.IntVar(&concurrency, "concurrency", 0, "warm's --concurrency (0: its default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ds, err := parseDelays(delays)
	if err != nil {
		return err
	}
	if upstream == "" {
		if upstream, err = firstProxy(ctx); err != nil {
			return err
		}
	}
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "goproxy-bench-"); err != nil {
			return err
		}
		defer removeTree(workDir)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is needed for the baseline: %w", err)
	}
	b := &bench{self: self, goBin: goBin, work: workDir, stderr: stderr, concurrency: concurrency, runs: runs}
	defer func() {
		for _, d := range b.trash {
			removeTree(d)
		}
	}()
	modeSet := wordSet(modes)
	var rows []row
	for _, name := range strings.Split(fixtures, ",") {
		fx, proxyDir, err := b.primedFixture(ctx, name, fixturesDir, cacheDir, upstream)
		if err != nil {
			return err
		}
		for _, d := range ds {
			srv, err := serveProxy(proxyDir, d, "")
			if err != nil {
				return err
			}
			rs, err := b.measure(ctx, fx, srv.url, d, modeSet, sweep)
			srv.close()
			rows = append(rows, rs...)
			if err != nil {
				printRows(stdout, rows)
				return err
			}
		}
	}
	printRows(stdout, rows)
	return nil
}

func defaultFixturesDir() string {
	for _, d := range []string{"../shared/fixtures/gosum", "../../shared/fixtures/gosum", "../../../shared/fixtures/gosum"} {
		if _, err := os.Stat(d); err == nil {
			return d
		}
	}
	return "../shared/fixtures/gosum"
}

func parseDelays(s string) ([]time.Duration, error) {
	var ds []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--delays: %w", err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// firstProxy returns the first proxy URL of `go env GOPROXY`.
func firstProxy(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOPROXY").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOPROXY: %w", err)
	}
	for _, p := range strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' || r == '|' }) {
		if strings.HasPrefix(p, "http") {
			return p, nil
		}
	}
	return "", errors.New("go env GOPROXY names no proxy URL: pass --upstream")
}

type fixture struct{ name, goSum, goMod string }

type bench struct {
	// trash are trees removed at the very end: ext4 makes creating inodes
	// slow for a while after many were deleted (recently_deleted), which
	// would penalise whichever run follows a removal.
	trash             []string
	self, goBin, work string
	stderr            io.Writer
	concurrency, runs int
}

// row is one line of the result table.
type row struct {
	fixture string
	delay   time.Duration
	what    string
	seconds float64
	cpu     float64
	rssMB   float64 // 0: not measured
	modules int
	base    string // the row this one is compared with
}

// primedFixture stages the fixture name from fixturesDir under b.work
// (warm reads the go.mod next to the go.sum, with its directory
// replacements: a staged copy has them, as stubs) and primes the GOPROXY
// directory under cacheDir with what it needs from upstream. It returns the
// staged fixture and that directory.
func (b *bench) primedFixture(ctx context.Context, name, fixturesDir, cacheDir, upstream string) (fixture, string, error) {
	fx := fixture{name: name, goSum: filepath.Join(fixturesDir, name+".go.sum"), goMod: filepath.Join(fixturesDir, name+".go.mod")}
	src := filepath.Join(b.work, "src-"+name, "m")
	if err := stage(fx, src); err != nil {
		return fx, "", err
	}
	fx.goSum, fx.goMod = filepath.Join(src, "go.sum"), filepath.Join(src, "go.mod")
	proxyDir := filepath.Join(cacheDir, "proxy")
	if err := b.prime(ctx, fx, proxyDir, upstream); err != nil {
		return fx, "", fmt.Errorf("prime %s: %w", name, err)
	}
	return fx, proxyDir, nil
}

// wordSet is the set of the comma-separated words of list.
func wordSet(list string) map[string]bool {
	set := map[string]bool{}
	for _, m := range strings.Split(list, ",") {
		set[strings.TrimSpace(m)] = true
	}
	return set
}

// prime fills proxyDir (the GOPROXY file layout, which is exactly the
// download cache's) with every file the fixture needs, once: warm from the
// real proxy, then an untimed `go mod download` through a local proxy that
// fetches what is missing from upstream.
func (b *bench) prime(ctx context.Context, fx fixture, proxyDir, upstream string) error {
	marker := filepath.Join(proxyDir, ".primed-"+fx.name)
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	fmt.Fprintf(b.stderr, "priming %s from %s into %s (once)\n", fx.name, upstream, proxyDir)
	modcache := filepath.Join(filepath.Dir(proxyDir), "prime-modcache")
	sum, err := warm.Run(ctx, warm.Options{
		Source:     warm.HTTPSource{BaseURL: upstream},
		GoSumFiles: []string{fx.goSum},
		ModCache:   modcache,
		Progress:   b.stderr,
	})
	if err != nil {
		fmt.Fprintf(b.stderr, "priming: %d failures (kept going): %v\n", len(sum.Failures), err)
	}
	if err := copyTree(filepath.Join(modcache, "cache", "download"), proxyDir); err != nil {
		return err
	}
	srv, err := serveProxy(proxyDir, 0, upstream)
	if err != nil {
		return err
	}
	defer srv.close()
	if _, err := b.goModDownload(ctx, fx, srv.url); err != nil {
		return err
	}
	fmt.Fprintf(b.stderr, "priming: %d files fetched by go mod download that warm had not\n", srv.misses.Load())
	return os.WriteFile(marker, nil, 0o644)
}

// measure runs every mode for one fixture and delay.
func (b *bench) measure(ctx context.Context, fx fixture, proxyURL string, d time.Duration, modes map[string]bool, sweep string) ([]row, error) {
	var rows []row
	add := func(what string, s sample, base string) {
		rows = append(rows, row{fixture: fx.name, delay: d, what: what, seconds: s.secs, cpu: s.cpu, rssMB: s.rssMB, modules: s.modules, base: base})
		fmt.Fprintf(b.stderr, "%s %v %s: %.2fs, %.1fs CPU, %.0f MB peak RSS\n", fx.name, d, what, s.secs, s.cpu, s.rssMB)
	}
	if modes["go"] {
		s, err := b.median(func() (sample, error) { return b.goModDownload(ctx, fx, proxyURL) })
		if err != nil {
			return rows, err
		}
		add("go mod download", s, "")
	}
	for _, extract := range []bool{true, false} {
		mode, what := "warm", "warm --extract"
		if !extract {
			mode, what = "warm-noextract", "warm --extract=false"
		}
		if !modes[mode] {
			continue
		}
		var keep string
		s, err := b.median(func() (sample, error) {
			s, mc, err := b.warm(ctx, fx, proxyURL, extract, b.concurrency)
			keep = mc
			return s, err
		})
		if err != nil {
			return rows, err
		}
		add(what, s, "go mod download")
		if !extract && modes["floor"] {
			f, err := b.median(func() (sample, error) { return b.floor(ctx, keep) })
			if err != nil {
				return rows, err
			}
			rows = append(rows, row{fixture: fx.name, delay: d, what: "floor: inflate+hash CPU", seconds: f.cpu, cpu: f.cpu, rssMB: f.rssMB, base: what})
			fmt.Fprintf(b.stderr, "%s %v floor: %.2fs CPU (%.2fs wall) for the zips of %s\n", fx.name, d, f.cpu, f.secs, what)
		}
		if !extract && modes["hit"] {
			h, err := b.median(func() (sample, error) { return b.warmInto(ctx, fx, proxyURL, keep, false, b.concurrency) })
			if err != nil {
				return rows, err
			}
			add("warm on a restored cache", h, "go mod download")
		}
		if modes["cp"] {
			c, err := b.median(func() (sample, error) { return b.cp(ctx, keep) })
			if err != nil {
				return rows, err
			}
			add("cp -r (cache of "+what+")", c, what)
		}
	}
	for _, f := range strings.Split(sweep, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return rows, fmt.Errorf("--sweep: %w", err)
		}
		s, err := b.median(func() (sample, error) {
			s, _, err := b.warm(ctx, fx, proxyURL, modes["warm"], n)
			return s, err
		})
		if err != nil {
			return rows, err
		}
		add(fmt.Sprintf("warm --concurrency %d --extract=%v", n, modes["warm"]), s, "go mod download")
	}
	return rows, nil
}

type sample struct {
	secs    float64
	cpu     float64
	rssMB   float64
	modules int
}

// median runs f b.runs times and returns the run with the median time.
func (b *bench) median(f func() (sample, error)) (sample, error) {
	var ss []sample
	for range max(b.runs, 1) {
		s, err := f()
		if err != nil {
			return s, err
		}
		ss = append(ss, s)
	}
	for i := range ss {
		for j := i + 1; j < len(ss); j++ {
			if ss[j].secs < ss[i].secs {
				ss[i], ss[j] = ss[j], ss[i]
			}
		}
	}
	return ss[len(ss)/2], nil
}

// timed runs cmd and returns its wall time, CPU time and peak RSS. Dirty
// pages of earlier runs are written back first so that they do not bill
// this one. Peak RSS is the child's VmHWM, sampled every 10 ms (rusage's
// maxrss would include the parent's RSS inherited through vfork).
func timed(cmd *exec.Cmd) (sample, error) {
	syscall.Sync()
	var out bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	var hwm atomic.Int64
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if kb := vmHWM(cmd.Process.Pid); kb > hwm.Load() {
				hwm.Store(kb)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	err := cmd.Wait()
	close(stop)
	<-polled
	s := sample{secs: time.Since(start).Seconds(), rssMB: float64(hwm.Load()) / 1024}
	if cmd.ProcessState != nil {
		s.cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	if err != nil {
		return s, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, lastLines(out.String(), 20))
	}
	return s, nil
}

// vmHWM returns the peak resident set of a process in KiB, 0 if unknown.
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stage writes the fixture's go.mod and go.sum into dir, and for each
// replacement by a directory (etcd's ../api) a stub module there, so that
// cmd/go and warm both find it.
func stage(fx fixture, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var gomod []byte
	for src, dst := range map[string]string{fx.goMod: "go.mod", fx.goSum: "go.sum"} {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if dst == "go.mod" {
			gomod = data
		}
		if err := os.WriteFile(filepath.Join(dir, dst), data, 0o644); err != nil {
			return err
		}
	}
	f, err := modfile.Parse(fx.goMod, gomod, nil)
	if err != nil {
		return err
	}
	for _, r := range f.Replace {
		if r.New.Version != "" {
			continue
		}
		d := r.New.Path
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		stub := fmt.Sprintf("module %s\n\ngo %s\n", r.Old.Path, f.Go.Version)
		if err := os.WriteFile(filepath.Join(d, "go.mod"), []byte(stub), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// goModDownload times `go mod download` in a copy of the fixture's module
// with a cold GOMODCACHE.
func (b *bench) goModDownload(ctx context.Context, fx fixture, proxyURL string) (sample, error) {
	dir, err := os.MkdirTemp(b.work, "mod-")
	if err != nil {
		return sample{}, err
	}
	b.trash = append(b.trash, dir)
	if err := stage(fx, dir); err != nil {
		return sample{}, err
	}
	cmd := exec.CommandContext(ctx, b.goBin, "mod", "download")
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"GOMODCACHE=" + filepath.Join(dir, "modcache"),
		"GOCACHE=" + filepath.Join(dir, "gocache"),
		"GOPROXY=" + proxyURL,
		"GOSUMDB=off",
		"GONOSUMDB=*",
		"GOFLAGS=-mod=mod",
		"GOTOOLCHAIN=local",
		"GOENV=off",
		"GOTELEMETRY=off",
		"GOPRIVATE=",
		"GONOPROXY=",
	}
	return timed(cmd)
}

// warm times the warm in a child process (this binary's warm-child) with
// a cold GOMODCACHE, which it returns for cp.
func (b *bench) warm(ctx context.Context, fx fixture, proxyURL string, extract bool, concurrency int) (sample, string, error) {
	mc, err := os.MkdirTemp(b.work, "warm-")
	if err != nil {
		return sample{}, "", err
	}
	b.trash = append(b.trash, mc)
	s, err := b.warmInto(ctx, fx, proxyURL, mc, extract, concurrency)
	return s, mc, err
}

// floor times, in a child, inflating and hashing every zip under mc's
// download cache: the CPU floor of a warm that fetched them.
func (b *bench) floor(ctx context.Context, mc string) (sample, error) {
	return timed(exec.CommandContext(ctx, b.self, "warm-floor", "--modcache", mc))
}

// warmInto times a warm into the module cache mc.
func (b *bench) warmInto(ctx context.Context, fx fixture, proxyURL, mc string, extract bool, concurrency int) (sample, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, b.self, "warm-child", "--proxy", proxyURL, "--go-sum", fx.goSum, "--modcache", mc,
		"--extract="+strconv.FormatBool(extract), "--concurrency", strconv.Itoa(concurrency))
	cmd.Stdout = &out
	s, err := timed(cmd)
	if err != nil {
		return s, err
	}
	var sum warm.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		return s, fmt.Errorf("warm-child output: %w", err)
	}
	if len(sum.Failures) > 0 {
		return s, fmt.Errorf("warm failed for %d modules, first: %+v", len(sum.Failures), sum.Failures[0])
	}
	s.modules = sum.Modules
	return s, nil
}

// warmFloor inflates and hashes every zip of a module cache with
// GOMAXPROCS workers: nothing else, the floor of a warm's CPU work.
type warmFloor struct{}

func init() { register(warmFloor{}) }

func (warmFloor) Name() string { return "warm-floor" }
func (warmFloor) Synopsis() string {
	return "internal: inflate and hash every zip of a module cache (the warm's CPU floor)"
}

func (warmFloor) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("warm-floor", flag.ContinueOnError)
	fl.SetOutput(stderr)
	mc := fl.String("modcache", "", "module cache")
	if err := fl.Parse(args); err != nil {
		return err
	}
	var zips []string
	filepath.WalkDir(filepath.Join(*mc, "cache", "download"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".zip") {
			zips = append(zips, p)
		}
		return nil
	})
	next := make(chan string)
	errc := make(chan error, runtime.GOMAXPROCS(0))
	for range runtime.GOMAXPROCS(0) {
		go func() {
			var first error
			for p := range next {
				f, err := os.Open(p)
				if err == nil {
					fi, _ := f.Stat()
					_, err = warm.HashZip(f, fi.Size())
					f.Close()
				}
				if err != nil && first == nil {
					first = fmt.Errorf("%s: %w", p, err)
				}
			}
			errc <- first
		}()
	}
	for _, z := range zips {
		next <- z
	}
	close(next)
	var errs []error
	for range runtime.GOMAXPROCS(0) {
		errs = append(errs, <-errc)
	}
	fmt.Fprintf(stdout, "%d zips\n", len(zips))
	return errors.Join(errs...)
}

// cp times `cp -r` of a cache.
func (b *bench) cp(ctx context.Context, src string) (sample, error) {
	dst := fmt.Sprintf("%s.copy%d", src, len(b.trash))
	b.trash = append(b.trash, dst)
	return timed(exec.CommandContext(ctx, "cp", "-r", src, dst))
}

func printRows(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "fixture\tdelay\twhat\tseconds\tCPU s\tpeak RSS MB\tratio\t\n")
	find := func(r row) *row {
		for i := range rows {
			if rows[i].fixture == r.fixture && rows[i].delay == r.delay && rows[i].what == r.base {
				return &rows[i]
			}
		}
		return nil
	}
	for _, r := range rows {
		ratio := ""
		if base := find(r); base != nil && r.seconds > 0 {
			if strings.HasPrefix(r.what, "floor") {
				ratio = fmt.Sprintf("warm wall = %.1fx this floor", base.seconds/r.seconds)
			} else if strings.HasPrefix(r.what, "cp") {
				ratio = fmt.Sprintf("warm is %.1fx cp", base.seconds/r.seconds)
			} else {
				ratio = fmt.Sprintf("%.1fx faster than go", base.seconds/r.seconds)
			}
		}
		rss := "-"
		if r.rssMB > 0 && !strings.HasPrefix(r.what, "cp") {
			rss = fmt.Sprintf("%.0f", r.rssMB)
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%.2f\t%.1f\t%s\t%s\t\n", r.fixture, r.delay, r.what, r.seconds, r.cpu, rss, ratio)
	}
	tw.Flush()
}

// proxyServer serves a GOPROXY directory on 127.0.0.1.
type proxyServer struct {
	url    string
	srv    *http.Server
	misses atomic.Int64
}

func (p *proxyServer) close() { p.srv.Close() }

// serveProxy serves dir with delay before every answer. With fallback set,
// a file missing from dir is fetched from that proxy and kept.
func serveProxy(dir string, delay time.Duration, fallback string) (*proxyServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxyServer{url: "http://" + l.Addr().String()}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if delay > 0 {
			time.Sleep(delay)
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		file := filepath.Join(dir, filepath.FromSlash(name))
		if _, err := os.Stat(file); err != nil && fallback != "" && name != "" {
			p.misses.Add(1)
			fetchInto(r.Context(), fallback+"/"+name, file)
		}
		f, err := os.Open(file)
		if err != nil {
			http.Error(w, "not found: "+name, http.StatusNotFound)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || fi.IsDir() {
			http.Error(w, "not found: "+name, http.StatusNotFound)
			return
		}
		http.ServeContent(w, r, "", fi.ModTime(), f)
	})}
	go p.srv.Serve(l)
	return p, nil
}

// fetchInto stores url's body at file when the answer is 200.
func fetchInto(ctx context.Context, url, file string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return
	}
	os.MkdirAll(filepath.Dir(file), 0o755)
	tmp := file + ".bench-tmp"
	if os.WriteFile(tmp, data, 0o644) == nil {
		os.Rename(tmp, file)
	}
}

// copyTree copies the regular files under src into dst (existing files are
// kept), skipping lock and temporary files.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if strings.HasSuffix(p, ".lock") || strings.HasSuffix(p, ".tmp") || strings.HasSuffix(p, ".ziphash") {
			return nil
		}
		if _, err := os.Stat(target); err == nil {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// removeTree removes a tree that may hold read-only directories.
func removeTree(dir string) {
	if dir == "" {
		return
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	os.RemoveAll(dir)
}

// warmChild is the timed warm, run as a child process so that its peak
// RSS is measured alone.
type warmChild struct{}

func (warmChild) Name() string { return "warm-child" }
func (warmChild) Synopsis() string {
	return "internal: one warm for the warm benchmark, summary JSON on stdout"
}

func (warmChild) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		proxy, goSum, modcache string
		extract                bool
		concurrency            int
	)
	fs := flag.NewFlagSet("warm-child", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&proxy, "proxy", "", "GOPROXY URL")
	fs.StringVar(&goSum, "go-sum", "", "go.sum file")
	fs.StringVar(&modcache, "modcache", "", "module cache")
	fs.BoolVar(&extract, "extract", true, "extract module trees")
	fs.IntVar(&concurrency, "concurrency", 0, "concurrency")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if prof := os.Getenv("GOPROXY_BENCH_CPUPROFILE"); prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	sum, err := warm.Run(ctx, warm.Options{
		Source:      warm.HTTPSource{BaseURL: proxy},
		GoSumFiles:  []string{goSum},
		ModCache:    modcache,
		Extract:     extract,
		Concurrency: concurrency,
	})
	if sum != nil {
		json.NewEncoder(stdout).Encode(sum)
	}
	return err
}

// serveCmd serves a GOPROXY directory with an injected delay, for trying
// things by hand against the primed proxy.
type serveCmd struct{}

func init() { register(serveCmd{}) }

func (serveCmd) Name() string { return "serve-proxy" }
func (serveCmd) Synopsis() string {
	return "serve a GOPROXY directory on 127.0.0.1 with a per-request delay (prints the URL)"
}

func (serveCmd) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		dir   string
		delay time.Duration
	)
	ucd, _ := os.UserCacheDir()
	fs := flag.NewFlagSet("serve-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&dir, "dir", filepath.Join(ucd, "goproxy-setup-bench", "proxy"), "GOPROXY directory")
	fs.DurationVar(&delay, "delay", 0, "per-request delay")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := serveProxy(dir, delay, "")
	if err != nil {
		return err
	}
	defer p.close()
	fmt.Fprintln(stdout, p.url)
	<-ctx.Done()
	return nil
}

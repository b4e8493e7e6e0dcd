package warm

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// testMods cover the shapes cmd/go has special rules for: several
// versions of one path, upper case (escaped as !c), +incompatible,
// pseudo-versions, packages below the module root.
var testMods = []testenv.Module{
	{Path: "example.test/alpha", Version: "v1.0.0"},
	{Path: "example.test/alpha", Version: "v1.1.0"},
	{Path: "example.test/Upper/Case", Version: "v1.2.0"},
	{Path: "example.test/incompat", Version: "v2.0.0+incompatible"},
	{Path: "example.test/pseudo", Version: "v0.0.0-20240102030405-abcdefabcdef"},
	{Path: "example.test/deep", Version: "v1.0.0", Files: map[string]string{
		"sub/pkg/p.go": "package pkg\n\n// Name names the package.\nfunc Name() string { return \"deep\" }\n",
		"README":       "deep module\n",
	}},
}

// neededMods are the testMods the consumer's build list holds: the
// consumer requires the highest version of each path, so cmd/go never
// reads example.test/alpha@v1.0.0, and neither does warm.
var neededMods = testMods[1:]

const childEnv = "WARM_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		childWarm()
		return
	}
	os.Exit(m.Run())
}

// childWarm is the warm run in a child process that TestWarmKilled kills.
func childWarm() {
	_, err := Run(context.Background(), Options{
		Source:      HTTPSource{BaseURL: os.Getenv("WARM_PROXY")},
		GoSumFiles:  []string{os.Getenv("WARM_GOSUM")},
		ModCache:    os.Getenv("WARM_MODCACHE"),
		Extract:     true,
		Concurrency: 4,
	})
	if err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// fixture is a consumer module whose go.sum lists testMods, and the proxy
// that serves them.
type fixture struct {
	proxy    string
	consumer string
	goSum    string
	sums     map[string]string // "path@version" and "path@version/go.mod" → h1
}

func newFixture(t *testing.T, mods []testenv.Module) *fixture {
	t.Helper()
	url, goSum := testenv.NewModuleServer(t, mods)
	dir := t.TempDir()
	testenv.WriteConsumer(t, dir, mods)
	sums, err := ParseGoSum("go.sum", goSum)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{proxy: url, consumer: dir, goSum: filepath.Join(dir, "go.sum"), sums: map[string]string{}}
	for _, s := range sums {
		k := s.Path + "@" + s.Version
		if s.GoMod {
			k += "/go.mod"
		}
		f.sums[k] = s.Hash
	}
	return f
}

// newModCache returns an empty module cache that is removed after the
// test even though extracted trees are read-only.
func newModCache(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	t.Cleanup(func() { removeTree(d) })
	return d
}

// goCheck proves the warmed cache with the real go command, offline.
func goCheck(t *testing.T, consumer, modcache string) {
	t.Helper()
	env := testenv.GoEnv(t, modcache) // GOPROXY=off
	if out, err := testenv.RunGo(t, consumer, env, "build", "./..."); err != nil {
		t.Fatalf("GOPROXY=off go build ./...: %v\n%s", err, out)
	}
	if out, err := testenv.RunGo(t, consumer, env, "mod", "verify"); err != nil {
		t.Fatalf("go mod verify: %v\n%s", err, out)
	}
}

func warmOpts(f *fixture, modcache string, extract bool) Options {
	return Options{
		Source:     HTTPSource{BaseURL: f.proxy},
		GoSumFiles: []string{f.goSum},
		ModCache:   modcache,
		Extract:    extract,
	}
}

func TestWarm(t *testing.T) {
	t.Parallel()
	for _, extract := range []bool{true, false} {
		name := map[bool]string{true: "extract", false: "download only"}[extract]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, testMods)
			modcache := newModCache(t)
			var progress bytes.Buffer
			opts := warmOpts(f, modcache, extract)
			opts.Progress = &progress
			sum, err := Run(t.Context(), opts)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if sum.Modules != len(neededMods) || sum.Fetched != len(neededMods) || sum.Hits != 0 || len(sum.Failures) != 0 {
				t.Errorf("summary = %+v, want %d modules, all fetched", sum, len(neededMods))
			}
			if sum.Bytes == 0 || sum.Upstream != strings.TrimSuffix(f.proxy, "/") {
				t.Errorf("summary bytes = %d, upstream = %q; want > 0 and %q", sum.Bytes, sum.Upstream, f.proxy)
			}
			if want := "warm: 10/10 files"; !strings.Contains(progress.String(), want) {
				t.Errorf("progress = %q, want a line with %q", progress.String(), want)
			}
			checkLayout(t, f, modcache, extract)
			goCheck(t, f.consumer, modcache)

			// A second run finds everything valid: all hits, no bytes.
			again, err := Run(t.Context(), warmOpts(f, modcache, extract))
			if err != nil {
				t.Fatalf("second Run: %v", err)
			}
			if again.Hits != len(neededMods) || again.Fetched != 0 || again.Bytes != 0 {
				t.Errorf("second run: hits %d, fetched %d, bytes %d; want %d, 0, 0", again.Hits, again.Fetched, again.Bytes, len(neededMods))
			}
		})
	}
}

// checkLayout checks cmd/go's cache layout for every module in f.
func checkLayout(t *testing.T, f *fixture, modcache string, extract bool) {
	t.Helper()
	unneeded, _ := newEntry(modcache, module.Version{Path: testMods[0].Path, Version: testMods[0].Version})
	if _, err := os.Stat(unneeded.base + ".mod"); err == nil {
		t.Errorf("%s@%s was fetched, but cmd/go never reads it", testMods[0].Path, testMods[0].Version)
	}
	for _, m := range neededMods {
		e, err := newEntry(modcache, module.Version{Path: m.Path, Version: m.Version})
		if err != nil {
			t.Fatal(err)
		}
		for _, ext := range []string{".info", ".mod", ".zip", ".lock"} {
			if _, err := os.Stat(e.base + ext); err != nil {
				t.Errorf("%s@%s: %v", m.Path, m.Version, err)
			}
		}
		zh, err := os.ReadFile(e.base + ".ziphash")
		if want := f.sums[m.Path+"@"+m.Version]; err != nil || string(zh) != want {
			t.Errorf("%s.ziphash = %q, %v; want %q", e.base, zh, err, want)
		}
		fi, err := os.Stat(e.xdir)
		switch {
		case !extract && err == nil:
			t.Errorf("%s exists, want no extracted tree", e.xdir)
		case extract && err != nil:
			t.Errorf("extracted tree: %v", err)
		case extract && fi.Mode().Perm() != 0o555:
			t.Errorf("%s mode = %v, want read-only 0555", e.xdir, fi.Mode().Perm())
		}
	}
	checkNoTemps(t, modcache)
}

// checkNoTemps fails if a temporary file or directory is left in modcache.
func checkNoTemps(t *testing.T, modcache string) {
	t.Helper()
	filepath.WalkDir(modcache, func(p string, d os.DirEntry, err error) error {
		if err == nil && (strings.HasSuffix(p, ".tmp") || strings.Contains(d.Name(), ".tmp-") || strings.HasSuffix(p, ".partial")) {
			t.Errorf("leftover temporary %s", p)
		}
		return nil
	})
}

// proxyCounter counts the requests per path.
type proxyCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *proxyCounter) inc(p string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[p]++
	return c.n[p]
}

// faultServer serves upstream through fault, which may answer a request
// itself (returning true) or let it through.
func faultServer(t *testing.T, upstream string, fault func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool) string {
	t.Helper()
	var count proxyCounter
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var (
			status int
			data   []byte
		)
		fetch := func() {
			resp, err := http.Get(upstream + r.URL.Path)
			if err != nil {
				status = http.StatusBadGateway
				return
			}
			defer resp.Body.Close()
			status = resp.StatusCode
			data, _ = io.ReadAll(resp.Body)
		}
		body := func() []byte {
			if status == 0 {
				fetch()
			}
			return data
		}
		if fault(w, r, count.inc(r.URL.Path), body) {
			return
		}
		body()
		w.WriteHeader(status)
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestWarmFaults(t *testing.T) {
	t.Parallel()
	victim := module.Version{Path: "example.test/Upper/Case", Version: "v1.2.0"}
	victimEsc := "example.test/!upper/!case/@v/v1.2.0"
	// A zip for the same module version with other content.
	other := []testenv.Module{{Path: victim.Path, Version: victim.Version, Files: map[string]string{"x.go": "package x\n"}}}
	otherDir := t.TempDir()
	testenv.WriteProxyDir(t, otherDir, other)
	otherZip, err := os.ReadFile(filepath.Join(otherDir, filepath.FromSlash(victimEsc)+".zip"))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		fault    func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool
		timeout  time.Duration
		wantKind errkind.Kind // Other: success
		modOK    bool         // the go.mod verified and may be written
		zipOK    bool         // the zip verified and may be written
		wantMsg  []string
		wantNth  int // requests for the victim's zip, when not 0
	}{
		{
			name: "tampered zip",
			fault: func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
				if r.URL.Path == "/"+victimEsc+".zip" {
					w.Write(otherZip)
					return true
				}
				return false
			},
			wantKind: errkind.Integrity,
			modOK:    true,
			wantMsg:  []string{"checksum mismatch", victim.Path, victim.Version, "go.sum:", "h1:"},
		},
		{
			name: "corrupt zip bytes",
			fault: func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
				if r.URL.Path == "/"+victimEsc+".zip" {
					b := bytes.Clone(body())
					zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
					if err != nil {
						panic(err)
					}
					off, err := zr.File[0].DataOffset()
					if err != nil {
						panic(err)
					}
					b[off] ^= 0xff // the first member's data: inflating or its CRC fails
					w.Write(b)
					return true
				}
				return false
			},
			wantKind: errkind.Integrity,
			modOK:    true,
			wantMsg:  []string{"invalid module zip", victim.Path},
		},
		{
			name: "tampered go.mod",
			fault: func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
				if r.URL.Path == "/"+victimEsc+".mod" {
					w.Write(append(bytes.Clone(body()), "require example.test/evil v1.0.0\n"...))
					return true
				}
				return false
			},
			wantKind: errkind.Integrity,
			zipOK:    true,
			wantMsg:  []string{"checksum mismatch", "(go.mod)", victim.Path},
		},
		{
			name: "truncated body",
			fault: func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
				if r.URL.Path == "/"+victimEsc+".zip" {
					b := body()
					w.Header().Set("Content-Length", itoa(len(b)))
					w.Write(b[:len(b)/2])
					w.(http.Flusher).Flush()
					panic(http.ErrAbortHandler)
				}
				return false
			},
			wantKind: errkind.Integrity,
			modOK:    true,
			wantMsg:  []string{"truncated", victim.Path},
			wantNth:  3,
		},
		{
			name: "500 then success",
			fault: func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
				if r.URL.Path == "/"+victimEsc+".zip" && nth == 1 {
					http.Error(w, "try again", http.StatusInternalServerError)
					return true
				}
				return false
			},
			wantNth: 2,
		},
		{
			name: "404 for one module",
			fault: func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
				if strings.HasPrefix(r.URL.Path, "/"+victimEsc) {
					http.NotFound(w, r)
					return true
				}
				return false
			},
			wantKind: errkind.Answered,
			wantMsg:  []string{"404", victim.Path, "not found"},
			wantNth:  1,
		},
		{
			name: "slow upstream",
			fault: func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
				time.Sleep(150 * time.Millisecond)
				return false
			},
		},
		{
			name: "upstream slower than the timeout",
			fault: func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
				if r.URL.Path == "/"+victimEsc+".zip" {
					select {
					case <-r.Context().Done():
					case <-time.After(5 * time.Second):
					}
					return true
				}
				return false
			},
			timeout:  time.Second, // long enough for each attempt to reach the server on a loaded machine
			wantKind: errkind.Unreachable,
			modOK:    true,
			wantMsg:  []string{"deadline exceeded", victim.Path},
			wantNth:  3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, testMods)
			var zipRequests atomic.Int64
			f.proxy = faultServer(t, f.proxy, func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
				if r.URL.Path == "/"+victimEsc+".zip" {
					zipRequests.Add(1)
				}
				return tc.fault(w, r, nth, body)
			})
			modcache := newModCache(t)
			opts := warmOpts(f, modcache, true)
			opts.Timeout = tc.timeout
			sum, err := Run(t.Context(), opts)
			if tc.wantNth != 0 && zipRequests.Load() != int64(tc.wantNth) {
				t.Errorf("zip requests = %d, want %d", zipRequests.Load(), tc.wantNth)
			}
			if tc.wantKind == errkind.Other {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				goCheck(t, f.consumer, modcache)
				return
			}
			if err == nil {
				t.Fatal("Run succeeded, want an error")
			}
			if k := errkind.Of(err); k != tc.wantKind {
				t.Errorf("kind = %v, want %v (%v)", k, tc.wantKind, err)
			}
			for _, m := range tc.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
			if len(sum.Failures) != 1 || sum.Failures[0].Module != victim.Path || sum.Failures[0].Kind != tc.wantKind.String() {
				t.Errorf("failures = %+v, want one %s failure of %s", sum.Failures, tc.wantKind, victim.Path)
			}
			if sum.Fetched != len(neededMods)-1 {
				t.Errorf("fetched = %d, want the other %d", sum.Fetched, len(neededMods)-1)
			}
			// Nothing is written for the failed file: a zip that fails
			// writes no zip, .ziphash, .info or tree (a verified go.mod
			// is a valid entry of its own); a go.mod that fails, nothing.
			e, _ := newEntry(modcache, victim)
			var written []string
			if !tc.zipOK {
				written = []string{e.base + ".zip", e.base + ".ziphash", e.base + ".info", e.xdir}
			}
			if !tc.modOK {
				written = append(written, e.base+".mod")
			}
			for _, p := range written {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s was written for a failed module", p)
				}
			}
			checkNoTemps(t, modcache)
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// Invalid cache entries are replaced; valid ones are kept.
func TestWarmRepairsCache(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testMods)
	modcache := newModCache(t)
	if _, err := Run(t.Context(), warmOpts(f, modcache, false)); err != nil {
		t.Fatal(err)
	}
	bad, _ := newEntry(modcache, module.Version{Path: "example.test/alpha", Version: "v1.1.0"})
	badMod, _ := newEntry(modcache, module.Version{Path: "example.test/deep", Version: "v1.0.0"})
	if err := os.WriteFile(bad.base+".zip", []byte("not a zip"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badMod.base+".mod", []byte("module evil\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A leftover of a killed run, and a half-extracted tree of cmd/go.
	if err := os.WriteFile(bad.base+".zip"+tempMarker+"123.tmp", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(badMod.xdir, "half"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badMod.base+".partial", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(t.Context(), warmOpts(f, modcache, true))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Fetched != 2 || sum.Hits != len(neededMods)-2 {
		t.Errorf("fetched %d, hits %d; want 2 and %d", sum.Fetched, sum.Hits, len(neededMods)-2)
	}
	checkLayout(t, f, modcache, true)
	goCheck(t, f.consumer, modcache)
}

// A go.work.sum alone, and skipped modules, are handled.
func TestWarmWorkSumAndSkip(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testMods)
	work := filepath.Join(t.TempDir(), "go.work.sum")
	data, _ := os.ReadFile(f.goSum)
	if err := os.WriteFile(work, bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	modcache := newModCache(t)
	opts := warmOpts(f, modcache, false)
	opts.GoSumFiles = []string{work, f.goSum}
	opts.Skip = func(p string) (string, bool) { return "matches GOPRIVATE", p == "example.test/pseudo" }
	sum, err := Run(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Modules != len(testMods)-1 || len(sum.Skipped) != 1 || sum.Skipped[0].Reason != "matches GOPRIVATE" {
		t.Errorf("modules %d, skipped %+v; want %d and the pseudo-version skipped", sum.Modules, sum.Skipped, len(testMods)-1)
	}
	e, _ := newEntry(modcache, module.Version{Path: "example.test/pseudo", Version: "v0.0.0-20240102030405-abcdefabcdef"})
	if _, err := os.Stat(e.base + ".mod"); err == nil {
		t.Errorf("skipped module was fetched")
	}
}

// A go mod download on the same cache at the same time: both succeed and
// the cache verifies.
func TestWarmConcurrentGoModDownload(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testMods)
	f.proxy = faultServer(t, f.proxy, func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
		time.Sleep(20 * time.Millisecond)
		return false
	})
	modcache := newModCache(t)
	env := append(testenv.GoEnv(t, modcache), "GOPROXY="+f.proxy)
	var wg sync.WaitGroup
	var goOut string
	var goErr error
	wg.Go(func() { goOut, goErr = testenv.RunGo(t, f.consumer, env, "mod", "download", "all") })
	_, err := Run(t.Context(), warmOpts(f, modcache, true))
	wg.Wait()
	if err != nil {
		t.Errorf("Run: %v", err)
	}
	if goErr != nil {
		t.Errorf("go mod download: %v\n%s", goErr, goOut)
	}
	goCheck(t, f.consumer, modcache)
}

// A warm killed with SIGKILL mid-download leaves no corrupt entry, and a
// re-run completes the cache.
func TestWarmKilled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testMods)
	// Zips arrive in two halves 300 ms apart, so the kill lands mid-body.
	f.proxy = faultServer(t, f.proxy, func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
		if !strings.HasSuffix(r.URL.Path, ".zip") || nth > 1 {
			return false
		}
		b := body()
		w.Header().Set("Content-Length", itoa(len(b)))
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
			return true
		}
		w.Write(b[len(b)/2:])
		return true
	})
	modcache := newModCache(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1", "WARM_PROXY="+f.proxy, "WARM_GOSUM="+f.goSum, "WARM_MODCACHE="+modcache)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until a zip's temporary file exists, then kill.
	deadline := time.Now().Add(10 * time.Second)
	for !hasTemp(modcache) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if !hasTemp(modcache) {
		t.Fatal("the child never started a download; the kill proved nothing")
	}
	// Whatever is in place is valid.
	for _, m := range testMods {
		e, _ := newEntry(modcache, module.Version{Path: m.Path, Version: m.Version})
		if _, err := os.Stat(e.base + ".zip"); err == nil {
			if h, err := hashZip(e.mod, e.base+".zip", "", false); err != nil || h != f.sums[m.Path+"@"+m.Version] {
				t.Errorf("%s after the kill: zip hash %q, %v", m.Path, h, err)
			}
		}
		if data, err := os.ReadFile(e.base + ".mod"); err == nil {
			if h := goModHash(data); h != f.sums[m.Path+"@"+m.Version+"/go.mod"] {
				t.Errorf("%s after the kill: go.mod hash %q", m.Path, h)
			}
		}
	}
	if _, err := Run(t.Context(), warmOpts(f, modcache, true)); err != nil {
		t.Fatalf("re-run: %v", err)
	}
	checkLayout(t, f, modcache, true)
	goCheck(t, f.consumer, modcache)
}

func hasTemp(dir string) bool {
	found := false
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), tempMarker) {
			found = true
		}
		return nil
	})
	return found
}

// The capability token in the agent's URL never appears in errors or the
// summary.
func TestHTTPSourceRedacts(t *testing.T) {
	t.Parallel()
	const canary = "CANARY-TOKEN-5f3a"
	f := newFixture(t, testMods[:1])
	srv := faultServer(t, f.proxy, func(w http.ResponseWriter, r *http.Request, nth int, body func() []byte) bool {
		http.NotFound(w, r)
		return true
	})
	opts := warmOpts(f, newModCache(t), false)
	opts.Source = HTTPSource{BaseURL: "http://user:pw-" + canary + "@" + strings.TrimPrefix(srv, "http://") + "/" + canary}
	sum, err := Run(t.Context(), opts)
	if err == nil {
		t.Fatal("Run succeeded against a proxy that answers 404")
	}
	js, _ := json.Marshal(sum)
	for _, s := range []string{err.Error(), string(js)} {
		if strings.Contains(s, canary) {
			t.Errorf("secret leaked: %s", s)
		}
	}
	// A transport error (nothing listens) is redacted too.
	dead := HTTPSource{BaseURL: "http://127.0.0.1:1/" + canary}
	_, err = dead.Open(t.Context(), "x/@v/list")
	if err == nil || strings.Contains(err.Error(), canary) || !isTemporary(err) {
		t.Errorf("Open on a closed port = %v; want a temporary error without the token", err)
	}
}

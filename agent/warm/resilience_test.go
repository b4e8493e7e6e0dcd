package warm

import (
	"crypto/x509"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/faultproxy"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// faultyUpstream serves mods through a faultproxy.Handler on 127.0.0.1
// (TLS with HTTP/2 when h2) and returns an upstream client for it, as
// `goproxy-setup warm` builds one, with a short idle-body timeout.
func faultyUpstream(t *testing.T, mods []testenv.Module, opts faultproxy.Options, h2 bool) (*upstream.Client, *faultproxy.Handler, string) {
	t.Helper()
	dir := t.TempDir()
	testenv.WriteProxyDir(t, dir, mods)
	fh := faultproxy.New(os.DirFS(dir), opts)
	t.Cleanup(fh.Close)
	srv := httptest.NewUnstartedServer(fh)
	var origins []upstream.Origin
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
		roots := x509.NewCertPool()
		roots.AddCert(srv.Certificate())
		origins = []upstream.Origin{{Host: strings.TrimPrefix(srv.URL, "https://"), Roots: roots}}
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	entries, err := upstream.ParseList(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	timeouts := upstream.Timeouts{Connect: 5 * time.Second, TLSHandshake: 5 * time.Second, ResponseHeader: 10 * time.Second, IdleBody: 300 * time.Millisecond}
	c := upstream.New(upstream.Options{
		Entries:   entries,
		Transport: upstream.NewTransport(upstream.TransportOptions{Origins: origins, Timeouts: timeouts, Retry: upstream.Retry{Attempts: 3, Backoff: 20 * time.Millisecond}}),
		// The policy's default: 5 failures open the circuit.
		Breaker: upstream.Breaker{Failures: 5, Cooldown: 30 * time.Second},
	})
	t.Cleanup(func() { c.Close() })
	return c, fh, srv.URL
}

// resilienceMods are testMods and one module with a 400 kB zip.
var resilienceMods = append(append([]testenv.Module(nil), testMods...), testenv.Module{Path: "example.test/big", Version: "v1.0.0", Files: map[string]string{
	"big.go":   "package big\n\n// Name names the package.\nfunc Name() string { return \"big\" }\n",
	"data.bin": string(testenv.Noise(400 << 10)),
}})

// TestWarmSurvivesFaults: every zip (or every file) broken once, all at
// once, leaves warm green and the cache verified; a body that can be
// continued is resumed into warm's temporary file, one that cannot is
// fetched again whole (nothing reached the cache yet).
func TestWarmSurvivesFaults(t *testing.T) {
	t.Parallel()
	zips := len(resilienceMods) - 1 // alpha@v1.0.0 is not in the build list
	every := func(string) bool { return true }
	cases := []struct {
		name        string
		opts        faultproxy.Options
		h2          bool
		wantResumes bool // every zip resumed
		wantRetries bool
	}{
		{name: "cut", opts: faultproxy.Options{Fault: faultproxy.Cut}, wantResumes: true},
		{name: "HTTP/2 stream reset", opts: faultproxy.Options{Fault: faultproxy.Cut}, h2: true, wantResumes: true},
		{name: "stall", opts: faultproxy.Options{Fault: faultproxy.Stall}, wantResumes: true},
		{name: "reset", opts: faultproxy.Options{Fault: faultproxy.Reset, Match: every}, wantRetries: true},
		{name: "503", opts: faultproxy.Options{Fault: faultproxy.Unavailable, Match: every}, wantRetries: true},
		{name: "cut .mod and .info", opts: faultproxy.Options{Fault: faultproxy.Cut, Match: func(p string) bool { return !strings.HasSuffix(p, ".zip") }}},
		{name: "cut, no Range support", opts: faultproxy.Options{Fault: faultproxy.Cut, NoRange: true}},
		{name: "cut, ETag changed", opts: faultproxy.Options{Fault: faultproxy.Cut, ChangingETag: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, resilienceMods)
			c, fh, _ := faultyUpstream(t, resilienceMods, tc.opts, tc.h2)
			modcache := newModCache(t)
			opts := warmOpts(f, modcache, false)
			opts.Source = c
			sum, err := Run(t.Context(), opts)
			if err != nil {
				t.Fatalf("warm with %s once per file: %v\nsummary %+v", tc.name, err, sum)
			}
			if fh.Counts().Faults == 0 {
				t.Fatalf("no fault was injected: the case proves nothing")
			}
			goCheck(t, f.consumer, modcache)
			checkNoTemps(t, modcache)
			h := c.Health()[0]
			if h.State != "closed" {
				t.Errorf("circuit %s after one fault per file, want closed: %+v", h.State, h)
			}
			if tc.wantResumes && (h.Resumes != int64(zips) || h.ResumedBytes == 0) {
				t.Errorf("counters %+v, want %d resumes (one per zip)", h.Counters, zips)
			}
			if tc.wantRetries && h.Retries == 0 {
				t.Errorf("counters %+v, want retries", h.Counters)
			}
		})
	}
}

// TestWarmThroughHTTPSourceResumes: warm through a plain GOPROXY URL
// resumes a cut zip into its temporary file: the upstream sends every
// byte once.
func TestWarmThroughHTTPSourceResumes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, resilienceMods)
	_, fh, url := faultyUpstream(t, resilienceMods, faultproxy.Options{Fault: faultproxy.Cut}, false)
	modcache := newModCache(t)
	opts := warmOpts(f, modcache, false)
	opts.Source = HTTPSource{BaseURL: url}
	if _, err := Run(t.Context(), opts); err != nil {
		t.Fatalf("warm: %v", err)
	}
	goCheck(t, f.consumer, modcache)
	fh.Wait()
	n := fh.Counts()
	if n.Faults == 0 || n.Partial != n.Faults {
		t.Errorf("upstream saw %+v: want every cut zip continued with a 206", n)
	}
}

// TestWarmInfoBestEffort: the .info of a build-list module whose zip the
// build does not need is optional: an upstream holding exactly what `go mod
// download` fetched (no such .info) leaves warm green with a warning, and
// the build works offline.
func TestWarmInfoBestEffort(t *testing.T) {
	t.Parallel()
	// a (go 1.16: its graph is not pruned) requires b; the consumer
	// imports a only, so cmd/go reads b's go.mod but never its zip.
	mods := []testenv.Module{
		{Path: "example.test/a", Version: "v1.0.0", Files: map[string]string{
			"go.mod": "module example.test/a\n\ngo 1.16\n\nrequire example.test/b v1.0.0\n",
			"a.go":   "package a\n\n// Name names the package.\nfunc Name() string { return \"a\" }\n",
		}},
		{Path: "example.test/b", Version: "v1.0.0"},
	}
	dir := t.TempDir()
	goSum := testenv.WriteProxyDir(t, dir, mods)
	if err := os.Remove(filepath.Join(dir, "example.test/b/@v/v1.0.0.info")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(faultproxy.New(os.DirFS(dir), faultproxy.Options{}))
	t.Cleanup(srv.Close)
	consumer := t.TempDir()
	for name, data := range map[string]string{
		"go.mod":  "module example.test/consumer\n\ngo 1.21\n\nrequire example.test/a v1.0.0\n",
		"go.sum":  string(goSum),
		"main.go": "package main\n\nimport \"example.test/a\"\n\nfunc main() { println(a.Name()) }\n",
	} {
		if err := os.WriteFile(filepath.Join(consumer, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	modcache := newModCache(t)
	sum, err := Run(t.Context(), Options{Source: HTTPSource{BaseURL: srv.URL}, GoSumFiles: []string{filepath.Join(consumer, "go.sum")}, ModCache: modcache})
	if err != nil {
		t.Fatalf("warm failed where the build succeeds: %v", err)
	}
	warned := false
	for _, w := range sum.Warnings {
		warned = warned || strings.Contains(w, "example.test/b@v1.0.0") && strings.Contains(w, ".info")
	}
	if !warned || sum.Failed != 0 {
		t.Errorf("summary warnings %q, %d failed; want a warning about example.test/b's .info and no failure", sum.Warnings, sum.Failed)
	}
	if _, err := os.Stat(filepath.Join(modcache, "cache/download/example.test/b/@v/v1.0.0.mod")); err != nil {
		t.Errorf("b's go.mod, which the build reads, was not warmed: %v", err)
	}
	goCheck(t, consumer, modcache)
}

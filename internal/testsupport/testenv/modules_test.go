package testenv

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/dirhash"
)

// testModules covers the path and version shapes cmd/go treats specially.
func testModules() []Module {
	return []Module{
		{Path: "example.test/plain", Version: "v1.0.0"},
		{Path: "example.test/plain", Version: "v1.1.0"},
		{Path: "example.test/Upper/Case", Version: "v0.2.0-RC1"},
		{Path: "example.test/major/v2", Version: "v2.3.4"},
		{Path: "example.test/legacy", Version: "v3.0.0+incompatible"},
		{Path: "example.test/windows", Version: "v1.0.0"},
		{Path: "example.test/pseudo", Version: "v0.0.0-20240102030405-abcdefabcdef"},
		{Path: "example.test/sub", Version: "v1.0.0", Files: map[string]string{
			"lib/lib.go": "package lib\n\nconst X = 1\n",
			"README.md":  "readme\n",
		}},
	}
}

func TestWriteProxyDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	goSum := WriteProxyDir(t, dir, testModules())
	for _, test := range []struct {
		file string
		want string // substring; "" = must exist
	}{
		{"example.test/plain/@v/list", "v1.0.0\nv1.1.0\n"},
		{"example.test/plain/@latest", `"Version":"v1.1.0"`},
		{"example.test/plain/@v/v1.0.0.info", `{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}`},
		{"example.test/plain/@v/v1.0.0.mod", "module example.test/plain\n\ngo " + DefaultGoVersion + "\n"},
		{"example.test/!upper/!case/@v/v0.2.0-!r!c1.zip", ""},
		{"example.test/!upper/!case/@v/list", "v0.2.0-RC1\n"},
		{"example.test/major/v2/@v/v2.3.4.mod", "module example.test/major/v2\n"},
		{"example.test/legacy/@v/v3.0.0+incompatible.mod", "module example.test/legacy\n"},
		{"example.test/pseudo/@v/v0.0.0-20240102030405-abcdefabcdef.info", `"Time":"2024-01-02T03:04:05Z"`},
		{"example.test/pseudo/@latest", `"Version":"v0.0.0-20240102030405-abcdefabcdef"`},
		{"example.test/sub/@v/v1.0.0.zip", ""},
	} {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(test.file)))
		if err != nil {
			t.Errorf("read %s: %v", test.file, err)
			continue
		}
		if !strings.Contains(string(data), test.want) {
			t.Errorf("%s = %q, want it to contain %q", test.file, data, test.want)
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, "example.test/pseudo/@v/list")); err != nil || len(data) != 0 {
		t.Errorf("pseudo-version @v/list = %q (%v), want empty: the protocol lists no pseudo-versions", data, err)
	}
	// The +incompatible zip must not contain a go.mod; the module zip of
	// the others must, and every file sits under path@version/.
	for _, test := range []struct {
		zip, prefix string
		wantGoMod   bool
		wantFile    string
	}{
		{"example.test/legacy/@v/v3.0.0+incompatible.zip", "example.test/legacy@v3.0.0+incompatible/", false, "legacy.go"},
		{"example.test/major/v2/@v/v2.3.4.zip", "example.test/major/v2@v2.3.4/", true, "major.go"},
		{"example.test/!upper/!case/@v/v0.2.0-!r!c1.zip", "example.test/Upper/Case@v0.2.0-RC1/", true, "case_.go"},
		{"example.test/sub/@v/v1.0.0.zip", "example.test/sub@v1.0.0/", true, "lib/lib.go"},
	} {
		zr, err := zip.OpenReader(filepath.Join(dir, filepath.FromSlash(test.zip)))
		if err != nil {
			t.Fatalf("open %s: %v", test.zip, err)
		}
		names := map[string]bool{}
		for _, f := range zr.File {
			if !strings.HasPrefix(f.Name, test.prefix) {
				t.Errorf("%s: entry %q not under %q", test.zip, f.Name, test.prefix)
			}
			names[strings.TrimPrefix(f.Name, test.prefix)] = true
		}
		zr.Close()
		if names["go.mod"] != test.wantGoMod {
			t.Errorf("%s has go.mod = %v, want %v", test.zip, names["go.mod"], test.wantGoMod)
		}
		if !names[test.wantFile] {
			t.Errorf("%s lacks %s; has %v", test.zip, test.wantFile, names)
		}
	}
	// go.sum: two lines per module version, hashes that match the files.
	lines := strings.Split(strings.TrimSpace(string(goSum)), "\n")
	if got, want := len(lines), 2*len(testModules()); got != want {
		t.Fatalf("go.sum has %d lines, want %d:\n%s", got, want, goSum)
	}
	zipHash, err := dirhash.HashZip(filepath.Join(dir, "example.test/!upper/!case/@v/v0.2.0-!r!c1.zip"), dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	if want := "example.test/Upper/Case v0.2.0-RC1 " + zipHash + "\n"; !strings.Contains(string(goSum), want) {
		t.Errorf("go.sum lacks %q:\n%s", want, goSum)
	}
	if !bytes.Equal(goSum, GoSum(t, testModules())) {
		t.Errorf("GoSum differs from WriteProxyDir's go.sum: generation is not deterministic")
	}
}

func TestWriteProxyDirRejectsBadModules(t *testing.T) {
	t.Parallel()
	for _, m := range []Module{
		{Path: "example.test/x", Version: "1.0.0"},           // not canonical
		{Path: "example.test/x/v2", Version: "v1.0.0"},       // major mismatch
		{Path: "example.test/x", Version: "v2.0.0"},          // needs +incompatible
		{Path: "Example Test/x", Version: "v1.0.0"},          // bad path
		{Path: "example.test/x", Version: "v1.0.0-bad..pre"}, // bad pre-release
	} {
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() { _ = recover() }()
			WriteProxyDir(ft, t.TempDir(), []Module{m})
		}()
		if !ft.failed {
			t.Errorf("WriteProxyDir(%s@%s) did not fail the test, want a Fatal", m.Path, m.Version)
		}
	}
}

// fatalRecorder turns Fatal into a recorded failure plus a panic the caller
// recovers, so the test can assert that a helper refuses bad input.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.failed = true
	panic("fatal")
}

func (f *fatalRecorder) Fatal(args ...any) {
	f.failed = true
	panic("fatal")
}

func TestNewModuleServer(t *testing.T) {
	t.Parallel()
	url, goSum := NewModuleServer(t, testModules())
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("url = %q, want http://127.0.0.1:PORT", url)
	}
	for _, test := range []struct {
		path       string
		wantStatus int
		wantType   string
	}{
		{"/example.test/plain/@v/list", 200, "text/plain; charset=utf-8"},
		{"/example.test/plain/@v/v1.1.0.info", 200, "application/json"},
		{"/example.test/plain/@v/v1.1.0.mod", 200, "text/plain; charset=utf-8"},
		{"/example.test/plain/@v/v1.1.0.zip", 200, "application/zip"},
		{"/example.test/plain/@latest", 200, "application/json"},
		{"/example.test/plain/@v/v9.9.9.info", 404, ""},
		{"/example.test/missing/@v/list", 404, ""},
		{"/", 404, ""},
	} {
		resp, err := http.Get(url + test.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != test.wantStatus {
			t.Errorf("GET %s = %d, want %d", test.path, resp.StatusCode, test.wantStatus)
			continue
		}
		if test.wantType != "" && resp.Header.Get("Content-Type") != test.wantType {
			t.Errorf("GET %s Content-Type = %q, want %q", test.path, resp.Header.Get("Content-Type"), test.wantType)
		}
		if strings.HasSuffix(test.path, ".info") && resp.StatusCode == 200 {
			var info struct {
				Version string
				Time    time.Time
			}
			if err := json.Unmarshal(body, &info); err != nil || info.Version != "v1.1.0" {
				t.Errorf("GET %s = %q (%v), want Version v1.1.0", test.path, body, err)
			}
		}
	}
	if len(goSum) == 0 {
		t.Errorf("empty go.sum")
	}
}

func TestDefaultPackageName(t *testing.T) {
	t.Parallel()
	for _, test := range []struct{ path, want string }{
		{"example.test/foo", "foo"},
		{"example.test/foo/v2", "foo"},
		{"gopkg.in/yaml.v3", "yaml"},
		{"example.test/Upper-Case", "upper_case"},
		{"example.test/9lives", "p9lives"},
		{"example.test/Case", "case_"},
		{"example.test/main", "main_"},
	} {
		if got := DefaultPackageName(test.path); got != test.want {
			t.Errorf("DefaultPackageName(%q) = %q, want %q", test.path, got, test.want)
		}
	}
}

// TestConsumerBuildsWithGo is the proof that the generated modules are
// real: cmd/go downloads them from NewModuleServer, checks them against
// the go.sum WriteConsumer wrote, builds them, and then verifies the
// module cache offline.
func TestConsumerBuildsWithGo(t *testing.T) {
	t.Parallel()
	mods := testModules()
	url, _ := NewModuleServer(t, mods)
	work := t.TempDir()
	WriteConsumer(t, work, mods)
	env := append(GoEnv(t, t.TempDir()), "GOPROXY="+url)
	if out, err := RunGo(t, work, env, "build", "-o", filepath.Join(t.TempDir(), "consumer"), "./..."); err != nil {
		t.Fatalf("go build ./... with GOPROXY=%s: %v\n%s", url, err, out)
	}
	offline := append(env, "GOPROXY=off")
	out, err := RunGo(t, work, offline, "mod", "verify")
	if err != nil || !strings.Contains(out, "all modules verified") {
		t.Fatalf("GOPROXY=off go mod verify: %v\n%s", err, out)
	}
	out, err = RunGo(t, work, offline, "run", ".")
	if err != nil {
		t.Fatalf("GOPROXY=off go run .: %v\n%s", err, out)
	}
	if want := "example.test/Upper/Case@v0.2.0-RC1"; !strings.Contains(out, want) {
		t.Errorf("go run output = %q, want it to contain %q", out, want)
	}
}

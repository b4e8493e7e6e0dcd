package modgen

import (
	"crypto/rand"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"
)

func TestBuildHashesMatchDirhash(t *testing.T) {
	t.Parallel()
	for _, m := range []Module{
		{Path: "example.com/a", Version: "v1.0.0"},
		{Path: "example.com/Upper/case", Version: "v0.1.0"},
		{Path: "example.com/m/v2", Version: "v2.3.4", Files: map[string]string{"x/x.go": "package x\n"}},
	} {
		b, err := Build(m)
		if err != nil {
			t.Fatalf("Build(%v): %v", m, err)
		}
		zf := filepath.Join(t.TempDir(), "m.zip")
		if err := os.WriteFile(zf, b.Zip, 0o644); err != nil {
			t.Fatal(err)
		}
		want, err := dirhash.HashZip(zf, dirhash.Hash1)
		if err != nil {
			t.Fatal(err)
		}
		if b.ZipHash != want {
			t.Errorf("%s: ZipHash = %s, want dirhash.HashZip's %s", m.Path, b.ZipHash, want)
		}
		if !strings.HasPrefix(b.ModHash, "h1:") || b.ModHash == b.ZipHash {
			t.Errorf("%s: ModHash = %q", m.Path, b.ModHash)
		}
	}
	if _, err := Build(Module{Path: "example.com/m/v2", Version: "v1.0.0"}); err == nil {
		t.Errorf("Build of a /v2 path at v1.0.0 succeeded, want an error")
	}
	if got := DefaultPackageName("example.com/Upper/case"); got != "case_" {
		t.Errorf("DefaultPackageName(case) = %q, want case_ (case is a keyword)", got)
	}
}

// TestHandler: the GOPROXY files of a module are served, with their
// length (a zip larger than the server's buffer too), and anything else is
// 404.
func TestHandler(t *testing.T) {
	t.Parallel()
	noise := make([]byte, 64<<10)
	rand.Read(noise)
	b, err := Build(Module{Path: "example.com/Upper/x", Version: "v1.0.0", Files: map[string]string{"x.go": "package x\n", "noise.bin": string(noise)}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler([]*Built{b}))
	defer srv.Close()
	for path, want := range map[string]int{
		"/example.com/!upper/x/@v/list":        200,
		"/example.com/!upper/x/@v/v1.0.0.info": 200,
		"/example.com/!upper/x/@v/v1.0.0.mod":  200,
		"/example.com/!upper/x/@v/v1.0.0.zip":  200,
		"/example.com/!upper/x/@latest":        200,
		"/example.com/!upper/x/@v/v9.9.9.zip":  404,
		"/example.com/other/@v/list":           404,
		"/nonsense":                            404,
	} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d (%s)", path, resp.StatusCode, want, body)
		}
		if want == 200 && resp.ContentLength != int64(len(body)) {
			t.Errorf("GET %s: Content-Length %d, want %d", path, resp.ContentLength, len(body))
		}
	}
}

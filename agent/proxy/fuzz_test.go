package proxy

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/agent/wire"
)

// FuzzHandler sends raw request lines through the whole handler with a
// recording upstream: no panic; a request without the capability token is
// 404 and a malformed one 400, and neither is forwarded; what is forwarded
// is a path ParsePath accepts.
func FuzzHandler(f *testing.F) {
	for _, s := range []struct{ method, target string }{
		{"GET", "/" + testToken + "/golang.org/x/mod/@v/list"},
		{"GET", "/" + testToken + "/golang.org/x/mod/@v/v0.1.0.zip"},
		{"GET", "/" + testToken + "/github.com/!burnt!sushi/toml/@v/v1.2.0.info"},
		{"GET", "/" + testToken + "/github.com/%21burnt%21sushi/toml/@latest"},
		{"GET", "/" + testToken + "/sumdb/sum.golang.org/tile/8/0/x001/234.p/5"},
		{"GET", "/" + testToken + "/sumdb/sum.golang.org/lookup/golang.org/x/mod@v0.1.0"},
		{"GET", "/" + testToken + "/../" + testToken + "/x.test/m/@v/list"},
		{"GET", "/" + testToken + "/x.test/m/../../etc/passwd"},
		{"GET", "/" + testToken + "/x.test/m/%2e%2e/%2e%2e/@v/list"},
		{"GET", "/" + testToken + "/x.test%2fm/@v/list"},
		{"GET", "/" + testToken + "/x.test%5cm/@v/list"},
		{"GET", "/" + testToken + "/x.test/m%00/@v/list"},
		{"GET", "/" + testToken + "/x.test/m/@v/v1.0.0.mod?x=1"},
		{"GET", "/" + testToken + "//x.test/m/@v/list"},
		{"GET", "/" + testToken + "/x.test/m/@v/%76%31.0.0.mod"},
		{"GET", "/" + testToken + "/x.test/m/@v/v1.0.0.mod%2500"},
		{"GET", "http://127.0.0.1/" + testToken + "/x.test/m/@v/list"},
		{"GET", "http://evil.example/" + testToken + "/x.test/m/@v/list"},
		{"CONNECT", "evil.example:443"},
		{"CONNECT", "/" + testToken + "/x.test/m/@v/list"},
		{"POST", "/" + testToken + "/x.test/m/@v/list"},
		{"GET", "/x.test/m/@v/list"},
		{"GET", "/" + strings.ToLower(testToken) + "/x.test/m/@v/list"},
		{"GET", "/" + testToken[:10] + "/x.test/m/@v/list"},
		{"GET", "/" + testToken + "x/x.test/m/@v/list"},
		{"GET", "*"},
		{"OPTIONS", "*"},
		{"GET", "/" + testToken + "/.goproxy-setup/stats"},
		{"GET", "/" + testToken + "/.goproxy-setup/../x.test/m/@v/list"},
	} {
		f.Add(s.method, s.target)
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http's server answers 400 itself
		}
		rec := &recorder{}
		h, err := New(Config{Token: testToken, Upstream: rec})
		if err != nil {
			t.Fatal(err)
		}
		req.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		got := rec.got()
		code := w.Code
		tokenPath := req.URL.Path == "/"+testToken || strings.HasPrefix(req.URL.Path, "/"+testToken+"/")
		authorized := tokenPath && strings.HasPrefix(req.RequestURI, "/")
		switch {
		case len(got) > 1:
			t.Fatalf("%s %s: forwarded %d times: %q", method, target, len(got), got)
		case len(got) == 1:
			if !authorized {
				t.Fatalf("%s %s: forwarded %q without the capability token", method, target, got[0])
			}
			if method != http.MethodGet && method != http.MethodHead {
				t.Fatalf("%s %s: method forwarded", method, target)
			}
			r, err := ParsePath(got[0])
			if err != nil || r.Path != got[0] {
				t.Fatalf("%s %s: forwarded %q, which ParsePath refuses: %v", method, target, got[0], err)
			}
			if strings.Contains(got[0], "..") && !strings.Contains(got[0], "/@v/") {
				t.Fatalf("%s %s: forwarded %q", method, target, got[0])
			}
			if code != http.StatusNotFound {
				t.Fatalf("%s %s: forwarded, upstream answered 404, client got %d", method, target, code)
			}
		default:
			if code == http.StatusOK && !strings.Contains(req.URL.Path, "/"+wire.AdminPrefix) {
				t.Fatalf("%s %s: 200 without forwarding", method, target)
			}
			rest, ok := strings.CutPrefix(req.URL.Path, "/"+testToken+"/")
			ok = ok || tokenPath
			_, perr := ParsePath(rest)
			if ok && perr != nil && req.Method == http.MethodGet && !strings.HasPrefix(rest, wire.AdminPrefix) &&
				strings.HasPrefix(req.RequestURI, "/") && !slices.Contains([]int{400, 404}, code) {
				t.Fatalf("%s %s: malformed path answered %d, want 400", method, target, code)
			}
			if ok && perr == nil && req.Method == http.MethodGet && req.URL.RawQuery == "" && code != http.StatusBadRequest {
				t.Fatalf("%s %s: valid path not forwarded (status %d)", method, target, code)
			}
			if !ok && code != http.StatusNotFound && code != http.StatusBadRequest {
				t.Fatalf("%s %s: no capability token, got %d, want 404 (or 400 for CONNECT/absolute)", method, target, code)
			}
		}
	})
}

// FuzzParsePath checks ParsePath never panics and accepts only clean
// paths.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"golang.org/x/mod/@v/list", "golang.org/x/mod/@v/v0.43.0.zip", "github.com/!burnt!sushi/toml/@latest",
		"x.test/m/@v/master.info", "sumdb/sum.golang.org/tile/8/1/x001/002.p/3", "sumdb/sum.golang.org/lookup/x.test/m@v1.0.0",
		"x.test/../m/@v/list", "x.test/m/@v/v1.0.0.zip/", "x.test/m%2f/@v/list", "a\\b/@v/list", "x.test/m/@v/..zip",
		"sumdb/sum.golang.org/supported", "sumdb/../../etc/passwd", "x.test/M/@v/list", "x.test/m/@v/v1.0.0+incompatible.mod",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r, err := ParsePath(p)
		if err != nil {
			return
		}
		if r.Path != p {
			t.Fatalf("ParsePath(%q).Path = %q", p, r.Path)
		}
		for _, e := range strings.Split(p, "/") {
			if e == "" || e == "." || e == ".." {
				t.Fatalf("ParsePath(%q) accepted an empty, . or .. element", p)
			}
		}
		if strings.ContainsAny(p, "%\\\x00?#") {
			t.Fatalf("ParsePath(%q) accepted a forbidden character", p)
		}
		if r.Kind != KindSumDB {
			if err := module.CheckPath(r.Module); err != nil {
				t.Fatalf("ParsePath(%q): module %q: %v", p, r.Module, err)
			}
			esc, err := module.EscapePath(r.Module)
			if err != nil || !strings.HasPrefix(p, esc+"/") {
				t.Fatalf("ParsePath(%q): module %q escapes to %q (%v), not the path's prefix", p, r.Module, esc, err)
			}
		}
		if r.Kind == KindMod || r.Kind == KindZip {
			if err := module.Check(r.Module, r.Version); err != nil {
				t.Fatalf("ParsePath(%q): %v", p, err)
			}
		}
	})
}

// FuzzEscapeRoundTrip checks that every valid module path and version,
// escaped as cmd/go escapes them, parses back to themselves.
func FuzzEscapeRoundTrip(f *testing.F) {
	for _, s := range [][2]string{
		{"github.com/BurntSushi/toml", "v1.2.0"}, {"golang.org/x/mod", "v0.0.0-20260102030405-abcdefabcdef"},
		{"example.com/m/v3", "v3.1.0"}, {"example.com/Old", "v2.0.0+incompatible"}, {"gopkg.in/yaml.v3", "v3.0.1"},
		{"example.com/ÄÖ", "v1.0.0"}, {"example.com/a~b", "v1.0.0-RC1"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, mod, ver string) {
		if module.Check(mod, ver) != nil {
			return
		}
		em, err1 := module.EscapePath(mod)
		ev, err2 := module.EscapeVersion(ver)
		if err1 != nil || err2 != nil {
			t.Fatalf("escape %s@%s: %v %v", mod, ver, err1, err2)
		}
		for _, suffix := range []string{".info", ".mod", ".zip"} {
			p := em + "/@v/" + ev + suffix
			r, err := ParsePath(p)
			if err != nil {
				t.Fatalf("ParsePath(%q) for %s@%s: %v", p, mod, ver, err)
			}
			if r.Module != mod || r.Version != ver {
				t.Fatalf("ParsePath(%q) = %s@%s, want %s@%s", p, r.Module, r.Version, mod, ver)
			}
		}
		if _, err := ParsePath(em + "/@v/list"); err != nil {
			t.Fatalf("ParsePath(%q): %v", em+"/@v/list", err)
		}
	})
}

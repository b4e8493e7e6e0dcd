package policies

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error is an *Error
// whose diagnostics name the file, and that every policy it accepts can be
// shown, parsed back to the same effect, and queried. The seed corpus is
// the example policies plus testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("*.hcl")
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Parse(src, "fuzz.hcl")
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				if len(src) > maxPolicySize {
					return
				}
				t.Fatalf("Parse error %T %v, want an *Error", err, err)
			}
			for _, d := range perr.Diagnostics {
				if !strings.HasPrefix(d.String(), "fuzz.hcl") {
					t.Errorf("diagnostic %q does not name the file", d.String())
				}
			}
			return
		}
		var buf bytes.Buffer
		if err := p.Show(&buf); err != nil {
			t.Fatalf("Show: %v", err)
		}
		again, err := Parse(buf.Bytes(), "fuzz.hcl")
		if err != nil {
			t.Fatalf("Parse(Show(p)): %v\n%s", err, buf.String())
		}
		// Show redacts inline tokens; everything else must survive.
		for _, u := range p.Upstreams {
			if u.Token != "" {
				u.Token = Redacted
			}
		}
		if !reflect.DeepEqual(again, p) {
			var b2 bytes.Buffer
			_ = again.Show(&b2)
			t.Fatalf("Parse(Show(p)) differs from p:\n%s\nvs\n%s", buf.String(), b2.String())
		}
		for _, mod := range []string{"corp.example.com/x", "golang.org/x/mod", ""} {
			p.Route(mod)
			p.Denied(mod)
		}
		p.GoEnv("http://127.0.0.1:1/t")
		p.Endpoints()
		_ = p.WithUpstreamList("https://a.example|public,direct")
	})
}

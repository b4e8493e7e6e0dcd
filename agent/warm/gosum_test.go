package warm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

const (
	hashA = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	hashB = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)

func TestParseGoSum(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in      string
		want    []string // "path version gomod hash line"
		wantErr string   // substring; the error must be bad input
	}{
		{
			name: "zip and go.mod lines",
			in:   "example.com/a v1.0.0 " + hashA + "\nexample.com/a v1.0.0/go.mod " + hashB + "\n",
			want: []string{"example.com/a v1.0.0 false " + hashA + " 1", "example.com/a v1.0.0 true " + hashB + " 2"},
		},
		{
			name: "CRLF, blank lines and no final newline",
			in:   "\r\nexample.com/a v1.0.0 " + hashA + "\r\n\r\nexample.com/b v0.1.0/go.mod " + hashB,
			want: []string{"example.com/a v1.0.0 false " + hashA + " 2", "example.com/b v0.1.0 true " + hashB + " 4"},
		},
		{name: "empty", in: "", want: nil},
		{
			name: "upper case, +incompatible and pseudo-versions",
			in: "github.com/BurntSushi/toml v1.2.0 " + hashA + "\n" +
				"github.com/x/y v2.0.0+incompatible " + hashA + "\n" +
				"golang.org/x/z v0.0.0-20240102030405-abcdefabcdef/go.mod " + hashA + "\n",
			want: []string{
				"github.com/BurntSushi/toml v1.2.0 false " + hashA + " 1",
				"github.com/x/y v2.0.0+incompatible false " + hashA + " 2",
				"golang.org/x/z v0.0.0-20240102030405-abcdefabcdef true " + hashA + " 3",
			},
		},
		{
			name: "other hash algorithms are skipped",
			in:   "example.com/a v1.0.0 h2:xyz\nexample.com/a v1.0.0 " + hashA + "\n",
			want: []string{"example.com/a v1.0.0 false " + hashA + " 2"},
		},
		{name: "too few fields", in: "example.com/a v1.0.0 " + hashA + "\nexample.com/a v1.0.0\n", wantErr: "go.sum:2: wrong number of fields"},
		{name: "too many fields", in: "example.com/a v1.0.0 " + hashA + " extra\n", wantErr: "go.sum:1: wrong number of fields"},
		{name: "bad version", in: "example.com/a 1.0.0 " + hashA + "\n", wantErr: "go.sum:1:"},
		{name: "non-canonical version", in: "example.com/a v1.0 " + hashA + "\n", wantErr: "go.sum:1:"},
		{name: "bad path", in: "-bad v1.0.0 " + hashA + "\n", wantErr: "go.sum:1:"},
		{name: "major version mismatch", in: "example.com/a/v2 v1.0.0 " + hashA + "\n", wantErr: "go.sum:1:"},
		{name: "bad hash", in: "example.com/a v1.0.0 h1:notbase64!\n", wantErr: "go.sum:1: malformed h1 hash"},
		{name: "no hash algorithm", in: "example.com/a v1.0.0 deadbeef\n", wantErr: "go.sum:1: malformed hash"},
		{name: "short hash", in: "example.com/a v1.0.0 h1:AAAA\n", wantErr: "go.sum:1: malformed h1 hash"},
		{name: "all bad lines reported", in: "a\nb\n", wantErr: "go.sum:2: wrong number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sums, err := ParseGoSum("go.sum", []byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseGoSum error = %v, want it to contain %q", err, tc.wantErr)
				}
				if k := errkind.Of(err); k != errkind.BadInput {
					t.Errorf("error kind = %v, want bad input", k)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseGoSum: %v", err)
			}
			var got []string
			for _, s := range sums {
				got = append(got, fmt.Sprintf("%s %s %v %s %d", s.Path, s.Version, s.GoMod, s.Hash, s.Line))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("ParseGoSum got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// The real go.sum files of public projects parse, and their go.mod's
// local replacements are reported, not fetched.
func TestLoadFixtures(t *testing.T) {
	t.Parallel()
	dir := fixturesDir(t)
	for _, tc := range []struct {
		name         string
		minItems     int
		wantReplaced int
	}{
		{"caddy", 350, 0},
		{"prometheus", 450, 0},
		{"etcd-server", 100, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			items, skipped, err := load([]string{filepath.Join(dir, tc.name+".go.sum")}, nil, nil)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if len(items) < tc.minItems {
				t.Errorf("got %d module versions, want at least %d", len(items), tc.minItems)
			}
			if len(skipped) != tc.wantReplaced {
				t.Errorf("got %d skipped (%v), want %d", len(skipped), skipped, tc.wantReplaced)
			}
		})
	}
}

func fixturesDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{"../../../shared/fixtures/gosum", "/work/shared/fixtures/gosum"} {
		if _, err := os.Stat(filepath.Join(d, "caddy.go.sum")); err == nil {
			return d
		}
	}
	t.Fatal("fixtures not found: shared/fixtures/gosum next to the repository")
	return ""
}

func TestLoadMergesAndReplaces(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goSum := write("go.sum", ""+
		"example.com/a v1.0.0 "+hashA+"\n"+
		"example.com/a v1.0.0 "+hashA+"\n"+ // duplicate
		"example.com/a v1.0.0/go.mod "+hashA+"\n"+
		"example.com/local v1.0.0/go.mod "+hashA+"\n"+
		"example.com/pinned v1.1.0 "+hashA+"\n"+
		"example.com/pinned v1.2.0 "+hashA+"\n"+
		"corp.example/private v1.0.0 "+hashA+"\n")
	write("go.mod", "module example.com/main\n\ngo 1.21\n\nreplace example.com/local => ../local\n\nreplace example.com/pinned v1.1.0 => ./pinned\n")
	workSum := write("go.work.sum", "example.com/a v1.0.0 "+hashB+"\n"+ // conflicting: first wins
		"example.com/b v1.0.0 "+hashA+"\n")
	items, skipped, err := load([]string{goSum, workSum}, func(p string) (string, bool) {
		return "GOPRIVATE", strings.HasPrefix(p, "corp.example/")
	}, nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	var got []string
	for _, it := range items {
		s := it.mod.String()
		if it.zipSum != nil {
			s += " zip=" + it.zipSum.Where()
		}
		if it.modSum != nil {
			s += " mod=" + it.modSum.Where()
		}
		got = append(got, strings.ReplaceAll(s, dir+string(filepath.Separator), ""))
	}
	want := []string{
		"example.com/a@v1.0.0 zip=go.sum:1 mod=go.sum:3",
		"example.com/pinned@v1.2.0 zip=go.sum:6",
		"example.com/b@v1.0.0 zip=go.work.sum:2",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("items got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var gotSkipped []string
	for _, s := range skipped {
		gotSkipped = append(gotSkipped, s.Module+"@"+s.Version)
		if s.Reason == "" {
			t.Errorf("skipped %s@%s has no reason", s.Module, s.Version)
		}
	}
	wantSkipped := []string{"example.com/local@v1.0.0", "example.com/pinned@v1.1.0", "corp.example/private@v1.0.0"}
	if strings.Join(gotSkipped, " ") != strings.Join(wantSkipped, " ") {
		t.Errorf("skipped = %v, want %v", gotSkipped, wantSkipped)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(bad, []byte("example.com/a v1.0.0 "+hashA+"\nbroken line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files []string
		want  []string
	}{
		{"missing file", []string{filepath.Join(dir, "nope.sum")}, []string{"nope.sum", "--go-sum"}},
		{"malformed", []string{bad}, []string{bad + ":2:"}},
		{"both reported", []string{bad, filepath.Join(dir, "nope.sum")}, []string{bad + ":2:", "nope.sum"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := load(tc.files, nil, nil)
			if err == nil {
				t.Fatal("load succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if k := errkind.Of(err); k != errkind.BadInput {
				t.Errorf("kind = %v, want bad input", k)
			}
		})
	}
}

func FuzzParseGoSum(f *testing.F) {
	f.Add([]byte("example.com/a v1.0.0 " + hashA + "\nexample.com/a v1.0.0/go.mod " + hashB + "\n"))
	f.Add([]byte("github.com/BurntSushi/toml v1.2.0 " + hashA + "\r\n"))
	f.Add([]byte("a b c\n\n  \t\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sums, err := ParseGoSum("go.sum", data)
		if err != nil {
			if errkind.Of(err) != errkind.BadInput {
				t.Fatalf("error kind = %v, want bad input: %v", errkind.Of(err), err)
			}
			if !strings.Contains(err.Error(), "go.sum:") {
				t.Fatalf("error %q does not name go.sum:LINE", err)
			}
			return
		}
		// What was accepted round-trips: formatted again, it parses to
		// the same lines.
		var b strings.Builder
		for _, s := range sums {
			v := s.Version
			if s.GoMod {
				v += "/go.mod"
			}
			fmt.Fprintf(&b, "%s %s %s\n", s.Path, v, s.Hash)
			if _, err := newEntry("/modcache", module.Version{Path: s.Path, Version: s.Version}); err != nil {
				t.Fatalf("accepted %s@%s cannot be escaped: %v", s.Path, s.Version, err)
			}
		}
		again, err := ParseGoSum("again", []byte(b.String()))
		if err != nil {
			t.Fatalf("reparse of accepted lines: %v", err)
		}
		if len(again) != len(sums) {
			t.Fatalf("reparse got %d lines, want %d", len(again), len(sums))
		}
		for i := range sums {
			a, b := sums[i], again[i]
			if a.Path != b.Path || a.Version != b.Version || a.GoMod != b.GoMod || a.Hash != b.Hash {
				t.Fatalf("reparse line %d = %+v, want %+v", i, b, a)
			}
		}
	})
}

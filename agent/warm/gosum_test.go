package warm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

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

// The real go.sum files of public projects parse, with their go.mod.
func TestReadInputsFixtures(t *testing.T) {
	t.Parallel()
	dir := fixturesDir(t)
	for _, tc := range []struct {
		name     string
		minLines int
	}{
		{"caddy", 350},
		{"prometheus", 450},
		{"etcd-server", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, err := readInputs([]string{filepath.Join(dir, tc.name+".go.sum")}, hclog.NewNullLogger())
			if err != nil {
				t.Fatalf("readInputs: %v", err)
			}
			if len(in.all) < tc.minLines || len(in.projects) != 1 || len(in.lineByLine) != 0 {
				t.Errorf("got %d lines, %d projects, %d line-by-line; want >= %d, 1, 0", len(in.all), len(in.projects), len(in.lineByLine), tc.minLines)
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

func TestReadInputsErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(bad, []byte("example.com/a v1.0.0 "+hashA+"\nbroken line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badMod := filepath.Join(dir, "b", "go.sum")
	os.MkdirAll(filepath.Dir(badMod), 0o755)
	os.WriteFile(badMod, nil, 0o644)
	os.WriteFile(filepath.Join(dir, "b", "go.mod"), []byte("module\n"), 0o644)
	for _, tc := range []struct {
		name  string
		files []string
		want  []string
	}{
		{"missing file", []string{filepath.Join(dir, "nope.sum")}, []string{"nope.sum", "--go-sum"}},
		{"malformed", []string{bad}, []string{bad + ":2:"}},
		{"both reported", []string{bad, filepath.Join(dir, "nope.sum")}, []string{bad + ":2:", "nope.sum"}},
		{"malformed go.mod", []string{badMod}, []string{"go.mod", "fix it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := readInputs(tc.files, hclog.NewNullLogger())
			if err == nil {
				t.Fatal("readInputs succeeded, want an error")
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

package proxy

import "testing"

func TestParsePath(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		in      string
		kind    Kind
		module  string
		version string
		bad     bool
	}{
		{in: "golang.org/x/mod/@v/list", kind: KindList, module: "golang.org/x/mod"},
		{in: "golang.org/x/mod/@v/v0.43.0.info", kind: KindInfo, module: "golang.org/x/mod", version: "v0.43.0"},
		{in: "golang.org/x/mod/@v/master.info", kind: KindInfo, module: "golang.org/x/mod", version: "master"},
		{in: "golang.org/x/mod/@v/v0.43.0.mod", kind: KindMod, module: "golang.org/x/mod", version: "v0.43.0"},
		{in: "github.com/!burnt!sushi/toml/@v/v1.2.0.zip", kind: KindZip, module: "github.com/BurntSushi/toml", version: "v1.2.0"},
		{in: "example.com/old/@v/v2.0.0+incompatible.zip", kind: KindZip, module: "example.com/old", version: "v2.0.0+incompatible"},
		{in: "example.com/m/v3/@v/v3.0.0-20260102030405-abcdefabcdef.mod", kind: KindMod, module: "example.com/m/v3", version: "v3.0.0-20260102030405-abcdefabcdef"},
		{in: "golang.org/x/mod/@latest", kind: KindLatest, module: "golang.org/x/mod"},
		{in: "sumdb/sum.golang.org/supported", kind: KindSumDB, module: "sum.golang.org"},
		{in: "sumdb/sum.golang.org/lookup/golang.org/x/mod@v0.43.0", kind: KindSumDB, module: "sum.golang.org"},
		{in: "sumdb/sum.golang.org/tile/8/0/x123/456.p/7", kind: KindSumDB, module: "sum.golang.org"},
		{in: "sumdb/sum.golang.org/latest", kind: KindSumDB, module: "sum.golang.org"},
		{in: "sumdb/sum.golang.org/tile/8/1/x001/101.p/180", kind: KindSumDB, module: "sum.golang.org"},
		{in: "sumdb/sum.golang.org/tile/8/data/x282/036", kind: KindSumDB, module: "sum.golang.org"},
		{in: "sumdb/..0/tile/8/0/000", bad: true},
		{in: "sumdb/sum.golang.org/tile/8/0/x1..p", bad: true},
		{in: "sumdb/Sum.golang.org/supported", bad: true},
		{in: "", bad: true},
		{in: "golang.org/x/mod/@v/v0.43.0.tar", bad: true},
		{in: "golang.org/x/../mod/@v/list", bad: true},
		{in: "golang.org//x/mod/@v/list", bad: true},
		{in: "golang.org/x/mod/@v/v0.43.0.zip/", bad: true},
		{in: "golang.org/x/mod/@v/latest.mod", bad: true},
		{in: "github.com/BurntSushi/toml/@v/list", bad: true},
		{in: "golang.org/x/mod%2f/@v/list", bad: true},
		{in: "golang.org\\x/mod/@v/list", bad: true},
		{in: "example.com/m/v3/@v/v2.0.0.mod", bad: true},
		{in: "sumdb/x/supported", bad: true},
		{in: "sumdb/sum.golang.org/evil", bad: true},
		{in: "sumdb/sum.golang.org/tile/../../etc", bad: true},
		{in: "etc/passwd", bad: true},
	} {
		t.Run(test.in, func(t *testing.T) {
			t.Parallel()
			r, err := ParsePath(test.in)
			if test.bad {
				if err == nil {
					t.Fatalf("ParsePath(%q) = %+v, want an error", test.in, r)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePath(%q): %v", test.in, err)
			}
			if r.Kind != test.kind || r.Module != test.module || r.Version != test.version || r.Path != test.in {
				t.Errorf("ParsePath(%q) = %+v, want kind %v module %q version %q", test.in, r, test.kind, test.module, test.version)
			}
		})
	}
}

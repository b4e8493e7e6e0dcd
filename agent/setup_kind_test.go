package agent

import (
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

func TestCheckGoEnv(t *testing.T) {
	for _, test := range []struct {
		modcache, gopath string
		want             string
	}{
		{"/abs/cache", "/abs/go", ""},
		{"", "", ""},
		{"rel/cache", "", `GOMODCACHE="rel/cache" is a relative path`},
		{"", "/abs:rel", `GOPATH entry "rel"`},
	} {
		t.Setenv("GOMODCACHE", test.modcache)
		t.Setenv("GOPATH", test.gopath)
		err := checkGoEnv()
		if test.want == "" {
			if err != nil {
				t.Errorf("GOMODCACHE=%q GOPATH=%q: %v, want no error", test.modcache, test.gopath, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), test.want) || errkind.Of(err) != errkind.BadInput {
			t.Errorf("GOMODCACHE=%q GOPATH=%q: %v (kind %v), want bad input saying %q", test.modcache, test.gopath, err, errkind.Of(err), test.want)
		}
	}
}

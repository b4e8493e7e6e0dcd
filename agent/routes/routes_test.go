package routes

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/policies"
)

// TestFetcherRoutes: a policy route sends its modules to its own upstream,
// the rest to the default route.
func TestFetcherRoutes(t *testing.T) {
	t.Parallel()
	serve := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	internal, public := serve("internal"), serve("public")
	pol, err := policies.Parse([]byte(fmt.Sprintf(`
upstream "internal" {
  url = %q
}
upstream "mirror" {
  url = %q
}
upstreams = ["mirror"]
route {
  modules   = ["corp.example.com/*"]
  upstreams = ["internal"]
}
`, internal.URL, public.URL)), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(pol, nil, nil, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"corp.example.com/lib/@v/list":       "internal",
		"corp.example.com/lib/@v/v1.0.0.zip": "internal",
		"golang.org/x/mod/@v/list":           "public",
		"sumdb/sum.golang.org/supported":     "public",
	} {
		rc, err := f.Open(context.Background(), path)
		if err != nil {
			t.Fatalf("Open(%s): %v", path, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != want {
			t.Errorf("Open(%s) served by %q, want %q", path, b, want)
		}
	}
}

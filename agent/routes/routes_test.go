package routes

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
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

// TestFetcherHealth: an upstream that serves two routes is listed once,
// with the retries of both routes' clients summed.
func TestFetcherHealth(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	busyOnce := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%2 == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(busyOnce.Close)
	pol, err := policies.Parse([]byte(fmt.Sprintf(`
upstream "shared" {
  url = %q
}
upstreams = ["shared"]
route {
  modules   = ["corp.example.com/*"]
  upstreams = ["shared"]
}
retry {
  backoff = "1ms"
}
`, busyOnce.URL)), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(pol, nil, nil, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	for _, p := range []string{"corp.example.com/lib/@v/list", "golang.org/x/mod/@v/list"} {
		rc, err := f.Open(t.Context(), p)
		if err != nil {
			t.Fatalf("Open(%s): %v", p, err)
		}
		rc.Close()
	}
	hs := f.Health()
	if len(hs) != 1 || hs[0].Upstream != busyOnce.URL || hs[0].Retries != 2 {
		t.Errorf("Health() = %+v, want %s once with 2 retries (one per route)", hs, busyOnce.URL)
	}
}

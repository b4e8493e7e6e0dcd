package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// TestSidecarPeerCheck: a sidecar serves the job container's uid alone:
// its environment (GOPROXY with the token, in the formats asked) and the
// proxy; another uid and root (in a pod, root in another container is not
// the job) get a one-line 403 on both, even with the token. The probe
// answers "ok" to anyone and nothing more.
func TestSidecarPeerCheck(t *testing.T) {
	t.Parallel()
	_, jobUID, jobGID := testenv.LocalUser(t, "gpsa")
	_, otherUID, otherGID := testenv.LocalUser(t, "gpsa")
	base := serveTest(t, ServeConfig{Sidecar: true, JobUID: jobUID})
	addr := strings.TrimPrefix(base, "http://")
	addr = addr[:strings.IndexByte(addr, '/')]
	envURL := "http://" + addr + wire.SidecarEnvPath
	list := base + "/example.com/m/@v/list"

	for _, test := range []struct {
		url, want string
	}{
		{envURL, "export GOPROXY='" + base + "'\n"},
		{envURL + "?format=dotenv", "GOPROXY=" + base + "\n"},
		{envURL + "?format=json", `{"env":[{"name":"GOPROXY","value":"` + base + `"}]}` + "\n"},
		{list, "v1.0.0\n"},
	} {
		if r := getAs(t, jobUID, jobGID, test.url, 1); r.Err != "" || len(r.Codes) != 1 || r.Codes[0] != 200 || r.Body != test.want {
			t.Errorf("job uid %d GET %s: got %+v, want 200 %q", jobUID, test.url, r, test.want)
		}
	}
	if r := getAs(t, jobUID, jobGID, envURL+"?format=yaml", 1); len(r.Codes) != 1 || r.Codes[0] != http.StatusBadRequest || !strings.Contains(r.Body, "use shell, dotenv or json") {
		t.Errorf("env in an unknown format: got %+v, want 400 naming the formats", r)
	}
	for _, url := range []string{envURL, list} {
		r := getAs(t, otherUID, otherGID, url, 1)
		want := fmt.Sprintf("uid %d may not use this agent: it serves only uid %d (the job container's)", otherUID, jobUID)
		if len(r.Codes) != 1 || r.Codes[0] != http.StatusForbidden || !strings.Contains(r.Body, want) || strings.Contains(r.Body, base) {
			t.Errorf("other uid GET %s: got %+v, want 403 saying %q", url, r, want)
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("root GET %s: status %d, want 403 (a sidecar does not serve root)", url, resp.StatusCode)
		}
	}
	if r := getAs(t, otherUID, otherGID, "http://"+addr+wire.ProbePath, 1); len(r.Codes) != 1 || r.Codes[0] != 200 || r.Body != "ok\n" {
		t.Errorf("probe as another uid: got %+v, want 200 \"ok\\n\"", r)
	}
	if err := Probe(context.Background(), addr); err != nil {
		t.Errorf("Probe(%s) = %v, want nil", addr, err)
	}
}

// TestProbeOtherServer: a probe that reaches something other than the
// agent, or nothing, fails.
func TestProbeOtherServer(t *testing.T) {
	t.Parallel()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	defer other.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, addr := range []string{strings.TrimPrefix(other.URL, "http://"), closed} {
		if err := Probe(context.Background(), addr); err == nil {
			t.Errorf("Probe(%s) = nil, want an error", addr)
		}
	}
}

// TestSidecarConfigRefused: a sidecar that could not keep its promise does
// not start, and says which setting to change. The suite runs as root, so
// a complete configuration is refused for running as root.
func TestSidecarConfigRefused(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		name string
		cfg  ProcessConfig
		want string
	}{
		{"no job uid", ProcessConfig{JobUID: -1, Listen: "127.0.0.1:7079"}, "--job-uid is required"},
		{"port zero", ProcessConfig{JobUID: 1001, Listen: "127.0.0.1:0"}, "needs a fixed loopback port"},
		{"no port", ProcessConfig{JobUID: 1001, Listen: "127.0.0.1"}, "needs a fixed loopback port"},
		{"handoff", ProcessConfig{JobUID: 1001, Listen: "127.0.0.1:7079", RunAs: "nobody"}, "drops no privilege"},
		{"as root", ProcessConfig{JobUID: 1001, Listen: "127.0.0.1:7079"}, "the sidecar runs as root"},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			test.cfg.Sidecar = true
			err := Run(context.Background(), test.cfg)
			if err == nil || !strings.Contains(err.Error(), test.want) || errkind.Of(err) != errkind.BadInput {
				t.Errorf("Run(%+v) = %v (%v), want bad input saying %q", test.cfg, err, errkind.Of(err), test.want)
			}
		})
	}
}

// TestSidecarToken: the sidecar's token is made once (0600) and read back
// on a restart; a token file that is a link, readable by others, or not a
// token is refused, naming the file.
func TestSidecarToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := SidecarToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, tokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if again, err := SidecarToken(dir); err != nil || again != first {
		t.Errorf("second start: token %q (%v), want the first one %q", again, err, first)
	}
	for _, test := range []struct {
		name  string
		setup func(path string)
	}{
		{"link", func(p string) { os.Symlink(filepath.Join(dir, tokenFile), p) }},
		{"readable by others", func(p string) { os.WriteFile(p, []byte(first), 0o644) }},
		{"not a token", func(p string) { os.WriteFile(p, []byte("not-a-token"), 0o600) }},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			d := t.TempDir()
			path := filepath.Join(d, tokenFile)
			test.setup(path)
			if _, err := SidecarToken(d); err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("SidecarToken with a token file that is %s: %v, want an error naming %s", test.name, err, path)
			}
		})
	}
}

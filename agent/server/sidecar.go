package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// checkSidecar refuses a sidecar configuration that could not keep its
// promise, each error naming the setting and the fix.
func checkSidecar(cfg ProcessConfig) error {
	bad := func(format string, args ...any) error {
		return errkind.Mark(errkind.BadInput, fmt.Errorf(format, args...))
	}
	switch {
	case cfg.Handoff != nil || cfg.RunAs != "":
		return bad("the sidecar takes no handoff and drops no privilege: it starts as its own user")
	case cfg.JobUID < 0:
		return bad("--job-uid is required: the uid the job container runs as (its securityContext runAsUser), the only uid the sidecar serves")
	}
	if _, port, err := net.SplitHostPort(cfg.Listen); err != nil || port == "" || port == "0" {
		return bad("--listen %q: the sidecar needs a fixed loopback port (e.g. 127.0.0.1:%d), where the job container finds it", cfg.Listen, DefaultSidecarPort)
	}
	switch {
	case os.Geteuid() == 0:
		return bad("the sidecar runs as root: give its container a uid of its own (securityContext runAsUser, runAsNonRoot: true); it needs no privilege")
	case cfg.JobUID == os.Getuid():
		return bad("--job-uid %d is the sidecar's own uid: run the job container under a uid of its own, or the peer check cannot tell the two apart", cfg.JobUID)
	}
	return nil
}

// DefaultSidecarPort is the loopback port the sidecar listens on unless
// told otherwise; the examples in examples/kubernetes use it.
const DefaultSidecarPort = 7079

// Probe asks the sidecar listening on addr whether it serves, as the pod's
// startup, readiness and liveness probes do (exec probes: kubelet's HTTP
// and TCP probes reach the pod's IP, and the agent listens on loopback
// only). It needs no token, and only the agent's own "ok" counts: an
// upstream's health is not the sidecar's (restarting it would not mend
// the upstream, and the job's build says which layer failed).
func Probe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+wire.ProbePath, nil)
	if err != nil {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("probe %s: %w", addr, err))
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "ok" {
		return fmt.Errorf("probe %s: got %s %q, want 200 ok (is another server on that port?)", addr, resp.Status, b)
	}
	return nil
}

// tokenFile is the sidecar's capability token in its state dir.
const tokenFile = "token"

// SidecarToken returns the capability token kept in dir, making it (0600,
// atomically) on the first start: a sidecar restarted by its liveness
// probe or after running out of memory then serves the GOPROXY the job
// already holds. dir is meant to be an emptyDir mounted into the sidecar
// alone (it outlives container restarts, not the pod). A token file that
// is not a regular file of this uid with mode 0600 holding a token is
// refused, naming the file.
func SidecarToken(dir string) (string, error) {
	path := filepath.Join(dir, tokenFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		tok, err := proxy.NewToken()
		if err != nil {
			return "", err
		}
		if err := atomicfile.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", errkind.Mark(errkind.Local, fmt.Errorf("keep the sidecar's token in --state-dir: %w", err))
		}
		return tok, nil
	case err != nil:
		return "", errkind.Mark(errkind.Local, fmt.Errorf("the sidecar's token %s: %w (remove it, or give --state-dir a directory of the sidecar's own)", path, err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", errkind.Mark(errkind.Local, fmt.Errorf("the sidecar's token %s: %w", path, err))
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || !ok || int(st.Uid) != os.Getuid() {
		return "", errkind.Mark(errkind.Local, fmt.Errorf("the sidecar's token %s is not a 0600 file of uid %d: remove it, or give --state-dir a directory of the sidecar's own", path, os.Getuid()))
	}
	b, err := io.ReadAll(io.LimitReader(f, 128))
	if err != nil {
		return "", errkind.Mark(errkind.Local, fmt.Errorf("the sidecar's token %s: %w", path, err))
	}
	tok := strings.TrimSpace(string(b))
	if raw, err := base64.RawURLEncoding.DecodeString(tok); err != nil || len(raw) != 16 {
		return "", errkind.Mark(errkind.Local, fmt.Errorf("the sidecar's token %s does not hold a token: remove it", path))
	}
	return tok, nil
}

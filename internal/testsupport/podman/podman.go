// Package podman is the container engine of the tests that run CI jobs in
// containers and pods: rootful podman as .ci/setup configures it (runc, no
// default ulimits), the two job images .ci/job-images builds once per
// machine (a golang:1.26-bookworm-shaped one and a golang:1.26-alpine-shaped
// one; no registry is reachable, so nothing is pulled), a Docker-API socket
// for runners that speak Docker (gitlab-ci-local's docker executor, act),
// and the cleanup of every container, pod, volume and network a test makes.
//
// Everything a test makes carries its Scope's token in its name (job names,
// workflow names, pod names), so that tests running at the same time, in
// this package or another, remove only their own. The cached job images are
// never removed by a test.
package podman

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// Path returns podman's executable. A missing podman skips the test when
// CI is unset and fails it when CI is set (.ci/setup installs it).
func Path(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("podman")
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("podman is not installed (CI is set, so this is a failure): run .ci/setup, which installs and configures it")
	}
	t.Skipf("podman is not installed: run .ci/setup (with CI set this test fails instead)")
	return ""
}

// Images are the references of the job images.
type Images struct {
	// Bookworm is golang:1.26-bookworm's shape: Debian minbase, bash,
	// useradd, curl, no sudo.
	Bookworm string
	// Alpine is golang:1.26-alpine's shape: BusyBox sh and tools, no bash,
	// curl, sudo, useradd or adduser.
	Alpine string
	// Helper is Debian minbase with bash and rsync, no Go: gitlab-ci-local's
	// --helper-image (it copies artifacts and caches out with rsync).
	Helper string
}

var (
	imagesOnce sync.Once
	images     Images
	imagesErr  error
)

// JobImages returns the job images, building them with .ci/job-images
// when this machine has not yet (once per machine: the images stay cached
// in podman's store; the script takes a lock, so concurrent test processes
// build once).
func JobImages(t testing.TB) Images {
	t.Helper()
	Path(t)
	imagesOnce.Do(func() {
		cmd := exec.Command(filepath.Join(testenv.RepoRoot(t), ".ci", "job-images"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			imagesErr = fmt.Errorf(".ci/job-images: %v\n%s", err, stderr.String())
			return
		}
		for _, ref := range strings.Fields(string(out)) {
			switch {
			case strings.Contains(ref, "/bookworm:"):
				images.Bookworm = ref
			case strings.Contains(ref, "/alpine:"):
				images.Alpine = ref
			case strings.Contains(ref, "/helper:"):
				images.Helper = ref
			}
		}
		if images.Bookworm == "" || images.Alpine == "" || images.Helper == "" {
			imagesErr = fmt.Errorf(".ci/job-images printed %q, want a bookworm, an alpine and a helper reference", out)
		}
	})
	if imagesErr != nil {
		t.Fatalf("podman: %v", imagesErr)
	}
	return images
}

// Scope is one test's share of the engine: a token that names everything
// the test makes, and the cleanup that removes it all.
type Scope struct {
	// Token is lower-case letters and digits, unique to the test: put it in
	// the name of every container, pod and volume the test makes (directly
	// or through a runner's job and workflow names).
	Token string
	bin   string
}

// NewScope returns a Scope whose cleanup, when the test ends, removes every
// pod, container, volume, network and image whose name contains the token
// (the cached job images stay), and then fails the test if any is left.
func NewScope(t testing.TB, prefix string) *Scope {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	s := &Scope{Token: prefix + hex.EncodeToString(b), bin: Path(t)}
	t.Cleanup(func() {
		if left := s.remove(); left != "" {
			t.Errorf("podman: left behind after cleanup: %s", left)
		}
	})
	return s
}

// kinds are the object kinds a scope cleans, in removal order, with the
// list format of each.
var kinds = []struct{ kind, format string }{
	{"pod", "{{.Name}}"},
	{"container", "{{.Names}}"},
	{"volume", "{{.Name}}"},
	{"network", "{{.Name}}"},
	{"image", "{{.Repository}}:{{.Tag}}"},
}

// list returns the names of objects of kind whose name holds the token.
func (s *Scope) list(kind, format string) []string {
	args := []string{kind, "ls", "--format", format}
	switch kind {
	case "container":
		args = []string{"ps", "-a", "--format", format}
	case "image":
		args = []string{"images", "--format", format}
	}
	out, _ := exec.Command(s.bin, args...).Output()
	var names []string
	for _, n := range strings.Fields(string(out)) {
		if strings.Contains(n, s.Token) {
			names = append(names, n)
		}
	}
	return names
}

// remove removes the scope's objects and returns what is left ("" when
// nothing). Containers are the scope's by name or by a volume of the scope
// they mount (gitlab-ci-local names its volumes after the job, not its
// containers).
func (s *Scope) remove() string {
	for _, v := range s.list("volume", "{{.Name}}") {
		out, _ := exec.Command(s.bin, "ps", "-a", "-q", "--filter", "volume="+v).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command(s.bin, append([]string{"rm", "-f", "-t", "0"}, ids...)...).Run()
		}
	}
	for _, k := range kinds {
		names := s.list(k.kind, k.format)
		if len(names) == 0 {
			continue
		}
		args := append([]string{k.kind, "rm", "-f"}, names...)
		if k.kind == "pod" || k.kind == "container" {
			args = append([]string{k.kind, "rm", "-f", "-t", "0"}, names...)
		}
		exec.Command(s.bin, args...).Run()
	}
	var left []string
	for _, k := range kinds {
		for _, n := range s.list(k.kind, k.format) {
			left = append(left, k.kind+" "+n)
		}
	}
	return strings.Join(left, ", ")
}

// Run runs podman with args and returns its combined output.
func (s *Scope) Run(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

// Service starts `podman system service` on a fresh unix socket for the
// test and returns its DOCKER_HOST value (unix:///...): the Docker API that
// the docker CLI, gitlab-ci-local and act speak. It stops when the test
// ends.
func (s *Scope) Service(t testing.TB) string {
	t.Helper()
	// A short path: a unix socket's path is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "gps-podman-")
	if err != nil {
		t.Fatalf("podman: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	var logs testenv.SyncBuffer
	cmd := exec.Command(s.bin, "system", "service", "--time=0", "unix://"+sock)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("podman system service: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get("http://d/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "unix://" + sock
			}
		}
		select {
		case <-done:
			t.Fatalf("podman system service exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("podman system service: no answer on %s in 30 s (%v): %s", sock, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

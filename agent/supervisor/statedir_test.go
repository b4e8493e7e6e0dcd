package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// TestStateDirWritesThroughHandle: the state dir is opened once and written
// through that handle: a directory swapped in at its path after it was
// opened gets nothing, the opened one gets the file.
func TestStateDirWritesThroughHandle(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	path := filepath.Join(base, "state")
	d, err := OpenStateDir(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	moved := filepath.Join(base, "moved")
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFile("report.txt", []byte("r"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(path, "report.txt")); err == nil {
		t.Errorf("written by path into the directory swapped in at %s", path)
	}
	b, err := os.ReadFile(filepath.Join(moved, "report.txt"))
	if err != nil || string(b) != "r" {
		t.Errorf("the opened directory holds %q, %v; want %q", b, err, "r")
	}
	fi, err := os.Stat(filepath.Join(moved, "report.txt"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v (%v), want 0644", fi.Mode().Perm(), err)
	}
}

// TestStateDirRefusesLinks: a symbolic or hard link, or a FIFO, planted in
// the state dir is refused as bad input naming it, and not followed.
func TestStateDirRefusesLinks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, dir, victim string)
		want  string
	}{
		{"symbolic link", func(t *testing.T, dir, victim string) { must(t, os.Symlink(victim, filepath.Join(dir, "agent.log"))) }, "symbolic link"},
		{"link inside the dir", func(t *testing.T, dir, victim string) {
			must(t, os.WriteFile(filepath.Join(dir, "agent.json"), []byte("{}"), 0o600))
			must(t, os.Symlink("agent.json", filepath.Join(dir, "agent.log")))
		}, "symbolic link"},
		{"hard link", func(t *testing.T, dir, victim string) { must(t, os.Link(victim, filepath.Join(dir, "agent.log"))) }, "hard links"},
		{"fifo", func(t *testing.T, dir, victim string) {
			must(t, exec.Command("mkfifo", filepath.Join(dir, "agent.log")).Run())
		}, "not a plain file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			victim := filepath.Join(t.TempDir(), "victim")
			must(t, os.WriteFile(victim, []byte("secret"), 0o600))
			dir := filepath.Join(t.TempDir(), "state")
			d, err := OpenStateDir(dir)
			must(t, err)
			defer d.Close()
			tc.plant(t, dir, victim)
			_, err = d.open("agent.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err == nil || errkind.Of(err) != errkind.BadInput || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Join(dir, "agent.log")) {
				t.Errorf("open of a planted %s: %v (kind %v), want bad input naming %s/agent.log and saying %q", tc.name, err, errkind.Of(err), dir, tc.want)
			}
			if b, _ := os.ReadFile(victim); string(b) != "secret" {
				t.Errorf("the victim was written: %q", b)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStopWithoutAgent: a state dir that records no agent is a
// *NoAgentError that keeps the missing file's error (readState used to
// drop it, so Stop's no-agent branch could never run).
func TestStopWithoutAgent(t *testing.T) {
	t.Parallel()
	d, err := OpenStateDir(filepath.Join(t.TempDir(), "state"))
	must(t, err)
	defer d.Close()
	_, err = Stop(context.Background(), d)
	var none *NoAgentError
	if !errors.As(err, &none) || !errors.Is(err, fs.ErrNotExist) || errkind.Of(err) != errkind.BadInput {
		t.Errorf("Stop without an agent: %v (kind %v); want a bad-input *NoAgentError wrapping fs.ErrNotExist", err, errkind.Of(err))
	}
}

// TestStopVerifiesOnce: Stop proves the agent's identity once before it
// stops it (it used to verify twice: two /proc reads, two identity calls).
func TestStopVerifiesOnce(t *testing.T) {
	t.Parallel()
	child := exec.Command("sleep", "60")
	must(t, child.Start())
	done := make(chan struct{})
	go func() { child.Wait(); close(done) }()
	t.Cleanup(func() { child.Process.Kill(); <-done })
	var identity, stops atomic.Int32
	const token, nonce = "tok", "nonce-1"
	mux := http.NewServeMux()
	mux.HandleFunc("/"+token+"/"+wire.AdminPrefix+wire.Identity, func(w http.ResponseWriter, r *http.Request) {
		identity.Add(1)
		json.NewEncoder(w).Encode(wire.AgentIdentity{Nonce: nonce, PID: child.Process.Pid})
	})
	mux.HandleFunc("/"+token+"/"+wire.AdminPrefix+wire.Stats, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"requests": 7}`))
	})
	mux.HandleFunc("/"+token+"/"+wire.AdminPrefix+wire.Stop, func(w http.ResponseWriter, r *http.Request) {
		stops.Add(1)
		child.Process.Kill()
		<-done
		w.WriteHeader(http.StatusAccepted)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	d, err := OpenStateDir(filepath.Join(t.TempDir(), "state"))
	must(t, err)
	defer d.Close()
	start, err := procStartTime(child.Process.Pid)
	must(t, err)
	exe, err := procExe(child.Process.Pid)
	must(t, err)
	must(t, d.writeState(&State{PID: child.Process.Pid, BaseURL: srv.URL + "/" + token, StartTime: start, Exe: exe, Nonce: nonce}))
	s, err := Stop(context.Background(), d)
	if err != nil || s == nil || s.Requests != 7 {
		t.Fatalf("Stop = %+v, %v; want the agent's stats (7 requests)", s, err)
	}
	if got := identity.Load(); got != 1 {
		t.Errorf("identity endpoint asked %d times, want 1", got)
	}
	if got := stops.Load(); got != 1 {
		t.Errorf("stop endpoint asked %d times, want 1", got)
	}
}

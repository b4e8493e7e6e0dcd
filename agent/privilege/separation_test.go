package privilege

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// The test binary doubles as the agent stand-in and as the job user's probe:
// TestMain dispatches on GO_TEST_PRIVILEGE_CHILD.
const childEnv = "GO_TEST_PRIVILEGE_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(testenv.RunWithSharedBinary(m, &sharedBinary))
	case "agent":
		os.Exit(agentChild())
	case "probe":
		os.Exit(probeChild())
	case "unprivileged":
		os.Exit(unprivilegedChild())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s\n", childEnv)
		os.Exit(2)
	}
}

// sharedBinary is a copy of the test binary that every user can run. It is
// written before any test starts: writing an executable while another test
// forks makes exec fail with ETXTBSY.
var sharedBinary string

// agentReport is what the agent stand-in prints on its stdout after Drop.
type agentReport struct {
	Addr       string `json:"addr"`
	DropError  string `json:"drop_error"`
	UID        int    `json:"uid"`
	EUID       int    `json:"euid"`
	GID        int    `json:"gid"`
	EGID       int    `json:"egid"`
	Groups     []int  `json:"groups"`
	Setuid0    string `json:"setuid0"`
	KeyReadErr string `json:"key_read_err"`
}

// agentChild is the stand-in for `goproxy-setup agent --run-as`: started as
// root, secrets on stdin, key into the private dir, bind loopback, Drop,
// report, serve.
func agentChild() int {
	out := json.NewEncoder(os.Stdout)
	fail := func(format string, args ...any) int {
		out.Encode(agentReport{DropError: fmt.Sprintf(format, args...)})
		return 1
	}
	f := strings.Split(os.Getenv("GO_TEST_PRIVILEGE_USER"), ":")
	if len(f) != 3 {
		return fail("bad GO_TEST_PRIVILEGE_USER")
	}
	uid, _ := strconv.Atoi(f[1])
	gid, _ := strconv.Atoi(f[2])
	u := &User{Name: f[0], UID: uid, GID: gid}
	dir := os.Getenv("GO_TEST_PRIVILEGE_DIR")
	s, err := ReadSecrets(os.Stdin)
	if err != nil {
		return fail("%v", err)
	}
	// The shipped custody path (server.DropTo calls it): private dir, key
	// and certificate copies, key zeroed in memory.
	if err := TakeCustody(dir, &s, u); err != nil {
		return fail("%v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail("%v", err)
	}
	if err := Drop(u); err != nil {
		return fail("%v", err)
	}
	r := agentReport{Addr: ln.Addr().String(), UID: os.Getuid(), EUID: os.Geteuid(), GID: os.Getgid(), EGID: os.Getegid(), Setuid0: "<nil>"}
	r.Groups, _ = syscall.Getgroups()
	if err := syscall.Setuid(0); err != nil {
		r.Setuid0 = err.Error()
	}
	if _, err := os.ReadFile(filepath.Join(dir, "client.key")); err != nil {
		r.KeyReadErr = err.Error()
	}
	if err := out.Encode(r); err != nil {
		return 1
	}
	token := s.Token // the secret stays in the agent's memory only
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if token == "" {
			http.Error(w, "no token", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok\n")
	}))
	return 0
}

// probeRequest tells the job user's probe what to try.
type probeRequest struct {
	Denied   []string `json:"denied"`   // must fail with EACCES
	Readable []string `json:"readable"` // must be readable
	URL      string   `json:"url"`      // must answer 200
	Signal   int      `json:"signal"`   // pid that must refuse signal 0
	Canaries []string `json:"canaries"` // must appear nowhere the probe can read
	Scan     []string `json:"scan"`     // roots to scan (bounded)
}

type probeResult struct {
	UID      int               `json:"uid"`
	Errors   map[string]string `json:"errors"` // path → error ("" when read fine)
	Errnos   map[string]int    `json:"errnos"`
	Status   int               `json:"status"`
	HTTPErr  string            `json:"http_err"`
	SignalE  int               `json:"signal_errno"`
	Hits     []string          `json:"hits"`
	Scanned  int               `json:"scanned"`
	ScanErrs int               `json:"scan_errs"`
	// Cut is where the scan stopped for its time bound ("" when whole).
	Cut string `json:"cut"`
}

func errnoOf(err error) int {
	var e syscall.Errno
	if errors.As(err, &e) {
		return int(e)
	}
	return -1
}

// probeChild runs as the job's user.
func probeChild() int {
	var req probeRequest
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	res := probeResult{UID: os.Getuid(), Errors: map[string]string{}, Errnos: map[string]int{}}
	read := func(p string) {
		f, err := os.Open(p)
		if err == nil {
			_, err = io.Copy(io.Discard, io.LimitReader(f, 1<<16))
			if err != nil && strings.HasSuffix(p, "/mem") {
				err = nil // opened: that alone is the failure being tested for
			}
			f.Close()
		}
		res.Errors[p] = ""
		if err != nil {
			res.Errors[p] = err.Error()
		}
		res.Errnos[p] = errnoOf(err)
	}
	for _, p := range append(append([]string{}, req.Denied...), req.Readable...) {
		read(p)
	}
	if req.URL != "" {
		c := &http.Client{Timeout: 10 * time.Second}
		if resp, err := c.Get(req.URL); err != nil {
			res.HTTPErr = err.Error()
		} else {
			res.Status = resp.StatusCode
			resp.Body.Close()
		}
	}
	if req.Signal > 0 {
		res.SignalE = errnoOf(syscall.Kill(req.Signal, 0))
	}
	// The scan is bounded in time as well as in files: a machine's temp dir
	// may hold a whole build cache readable by everyone, and the probe must
	// answer before runAs gives up. The test's own directories come first
	// in req.Scan, so they are always read whole.
	deadline := time.Now().Add(25 * time.Second)
	for _, root := range req.Scan {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if time.Now().After(deadline) {
				res.Cut = p
				return fs.SkipAll
			}
			if err != nil {
				res.ScanErrs++
				if d != nil && d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if res.Scanned > 50000 {
				return fs.SkipAll
			}
			if !d.Type().IsRegular() && !strings.HasPrefix(p, "/proc/") {
				return nil
			}
			if info, err := d.Info(); err != nil || info.Size() > 4<<20 {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				res.ScanErrs++
				return nil
			}
			res.Scanned++
			for _, c := range req.Canaries {
				if bytes.Contains(b, []byte(c)) {
					res.Hits = append(res.Hits, p)
				}
			}
			return nil
		})
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// unprivilegedChild runs the bootstrap side as the job's user.
func unprivilegedChild() int {
	ctx := context.Background()
	mode := Detect(ctx)
	_, ensureErr := EnsureUser(ctx, os.Getenv("GO_TEST_PRIVILEGE_NEWUSER"), 0)
	r := Report{Mode: mode}
	out := map[string]any{
		"mode":         mode.String(),
		"warning":      r.Warning(),
		"lines":        r.Lines(),
		"enforce":      fmt.Sprint(r.Enforce(true)),
		"enforce_sep":  errors.Is(r.Enforce(true), ErrNotSeparated),
		"enforce_off":  fmt.Sprint(r.Enforce(false)),
		"ensure":       fmt.Sprint(ensureErr),
		"ensure_noprv": errors.Is(ensureErr, ErrNoPrivilege),
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// ---- helpers (parent side) ----

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// useraddMu serialises this package's own useradd/userdel calls; the
// retries in run cover other packages' concurrent calls.
var useraddMu sync.Mutex

func runAccountTool(t testing.TB, name string, args ...string) {
	t.Helper()
	useraddMu.Lock()
	defer useraddMu.Unlock()
	var out []byte
	var err error
	for i := 0; i < 20; i++ {
		out, err = exec.Command(name, args...).CombinedOutput()
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "lock") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// jobUser creates an ordinary user standing in for the job's user.
func jobUser(t *testing.T) *User {
	t.Helper()
	name := "gpsjob" + randHex(t, 4)
	runAccountTool(t, "useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", "--user-group", name)
	t.Cleanup(func() { runAccountTool(t, "userdel", name) })
	u, err := New().lookup(name, 0)
	if err != nil || u == nil {
		t.Fatalf("lookup %s: %v %v", name, u, err)
	}
	return u
}

// agentUser lets EnsureUser create the agent user, as the bootstrap does.
func agentUser(t *testing.T) *User {
	t.Helper()
	name := "gpsagent" + randHex(t, 4)
	useraddMu.Lock()
	u, err := EnsureUser(context.Background(), name, 0)
	useraddMu.Unlock()
	if err != nil {
		t.Fatalf("EnsureUser(%q): %v", name, err)
	}
	t.Cleanup(func() { runAccountTool(t, "userdel", name) })
	if !u.Created || u.UID <= 0 || u.UID >= 1000 || u.GID <= 0 {
		t.Fatalf("EnsureUser(%q) = %+v, want a created system user", name, u)
	}
	again, err := EnsureUser(context.Background(), name, u.UID)
	if err != nil || again.Created || again.UID != u.UID {
		t.Fatalf("EnsureUser(%q) again = %+v, %v; want the same user, not created", name, again, err)
	}
	return u
}

// publicDir returns a fresh directory that every user may traverse, so that
// an EACCES below it comes from the directory under test, not from a
// private test temp dir above it.
func publicDir(t *testing.T) string { return testenv.PublicDir(t, "privtest-") }

func runAs(t *testing.T, bin string, u *User, mode string, env []string, in any, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append([]string{childEnv + "=" + mode, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, env...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}}
	var stdin bytes.Buffer
	if in != nil {
		json.NewEncoder(&stdin).Encode(in)
	}
	cmd.Stdin = &stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s as %s: %v: %s", mode, u, err, stderr.Bytes())
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s as %s: output %q: %v", mode, u, b, err)
	}
}

type agentProc struct {
	cmd    *exec.Cmd
	report agentReport
}

// startAgent starts the agent stand-in as root, hands it the secrets on
// stdin and waits for its report.
func startAgent(t *testing.T, bin string, u *User, dir string, s Secrets, noNewPrivs bool) *agentProc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{
		childEnv + "=agent",
		fmt.Sprintf("GO_TEST_PRIVILEGE_USER=%s:%d:%d", u.Name, u.UID, u.GID),
		"GO_TEST_PRIVILEGE_DIR=" + dir,
	}
	cmd.Dir = "/"
	// Start with supplementary groups (root's and the job's), so that a
	// Drop that forgot to clear them is caught.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{0, uint32(u.GID) + 1}}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if noNewPrivs {
		err = StartNoNewPrivs(cmd)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if err := WriteSecrets(stdin, s); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	p := &agentProc{cmd: cmd}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("agent report: %v (stderr: %s)", err, stderr.Bytes())
	}
	if err := json.Unmarshal(line, &p.report); err != nil {
		t.Fatalf("agent report %q: %v", line, err)
	}
	return p
}

func testSecrets(t *testing.T) (Secrets, []string) {
	keyCanary := "keycanary" + randHex(t, 16)
	tokCanary := "tokcanary" + randHex(t, 16)
	return Secrets{
		CertPEM: []byte("-----BEGIN CERTIFICATE-----\nnot-secret\n-----END CERTIFICATE-----\n"),
		KeyPEM:  []byte("-----BEGIN EC PRIVATE KEY-----\n" + keyCanary + "\n-----END EC PRIVATE KEY-----\n"),
		Token:   tokCanary,
	}, []string{keyCanary, tokCanary}
}

// cgoBuild reports whether this binary links cgo, where AllThreadsSyscall is
// unavailable and Drop relies on StartNoNewPrivs.
func cgoBuild() bool {
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_GETPID, 0, 0, 0)
	return errno == syscall.ENOTSUP
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		// CI runs as root (.ci/run); a developer run as non-root cannot
		// create users, and must not pass silently.
		t.Fatalf("this test creates users and must run as root (CI does): sudo go test ./agent/privilege/")
	}
}

// TestSeparation is the root-run end-to-end check of key custody: a real job
// user, an agent user created by EnsureUser, the agent stand-in started as
// root and dropped, and the job user probing what it can reach.
func TestSeparation(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	job := jobUser(t)
	agent := agentUser(t)
	base := publicDir(t)
	bin := sharedBinary
	state := filepath.Join(base, "agent")
	if err := PrepareDir(state, agent); err != nil {
		t.Fatalf("PrepareDir: %v", err)
	}
	secrets, canaries := testSecrets(t)
	p := startAgent(t, bin, agent, state, secrets, true)
	r := p.report
	if r.DropError != "" {
		t.Fatalf("agent Drop: %s", r.DropError)
	}
	pid := p.cmd.Process.Pid

	t.Run("agent credentials", func(t *testing.T) {
		if r.UID != agent.UID || r.EUID != agent.UID || r.GID != agent.GID || r.EGID != agent.GID || len(r.Groups) != 0 {
			t.Errorf("agent reports uid %d euid %d gid %d egid %d groups %v, want %d %d %d %d []", r.UID, r.EUID, r.GID, r.EGID, r.Groups, agent.UID, agent.UID, agent.GID, agent.GID)
		}
		if !strings.Contains(r.Setuid0, "not permitted") {
			t.Errorf("setuid(0) in the agent: got %q, want operation not permitted", r.Setuid0)
		}
		if r.KeyReadErr != "" {
			t.Errorf("agent reading its own key: %s, want success", r.KeyReadErr)
		}
		st, err := ReadProcStatus(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		want := [4]int{agent.UID, agent.UID, agent.UID, agent.UID}
		if st.UIDs != want {
			t.Errorf("/proc/%d/status Uid = %v, want %v", pid, st.UIDs, want)
		}
		if wantG := [4]int{agent.GID, agent.GID, agent.GID, agent.GID}; st.GIDs != wantG {
			t.Errorf("/proc/%d/status Gid = %v, want %v", pid, st.GIDs, wantG)
		}
		if len(st.Groups) != 0 {
			t.Errorf("/proc/%d/status Groups = %v, want none", pid, st.Groups)
		}
		if !st.NoNewPrivs {
			t.Errorf("/proc/%d/status NoNewPrivs = 0, want 1", pid)
		}
		if st.CapEff|st.CapPrm|st.CapAmb != 0 {
			t.Errorf("capabilities left: %+v", st)
		}
	})

	t.Run("custody on disk", func(t *testing.T) {
		for _, c := range []struct {
			path string
			mode fs.FileMode
		}{{state, fs.ModeDir | 0o700}, {filepath.Join(state, "client.key"), 0o600}} {
			fi, err := os.Lstat(c.path)
			if err != nil {
				t.Fatal(err)
			}
			sys := fi.Sys().(*syscall.Stat_t)
			if fi.Mode() != c.mode || int(sys.Uid) != agent.UID || int(sys.Gid) != agent.GID {
				t.Errorf("%s: got mode %v owner %d:%d, want %v %d:%d", c.path, fi.Mode(), sys.Uid, sys.Gid, c.mode, agent.UID, agent.GID)
			}
		}
		entries, _ := os.ReadDir(state)
		for _, e := range entries {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("temp file %s left in the state dir", e.Name())
			}
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range canaries {
			if bytes.Contains(env, []byte(c)) {
				t.Errorf("canary in the agent's environment (read as root)")
			}
		}
	})

	t.Run("job user", func(t *testing.T) {
		key := filepath.Join(state, "client.key")
		req := probeRequest{
			Denied: []string{
				key, state,
				fmt.Sprintf("/proc/%d/environ", pid),
				fmt.Sprintf("/proc/%d/mem", pid),
			},
			Readable: []string{fmt.Sprintf("/proc/%d/cmdline", pid)},
			URL:      "http://" + r.Addr + "/",
			Signal:   pid,
			Canaries: canaries,
			// The machine's whole temp dir last: the scan's time bound may cut it.
			Scan: []string{base, "/dev/shm", fmt.Sprintf("/proc/%d/cmdline", pid), fmt.Sprintf("/proc/%d/environ", pid), os.TempDir()},
		}
		var res probeResult
		runAs(t, bin, job, "probe", nil, req, &res)
		if res.UID != job.UID {
			t.Fatalf("probe ran as uid %d, want %d", res.UID, job.UID)
		}
		for _, p := range req.Denied {
			if res.Errnos[p] != int(syscall.EACCES) {
				t.Errorf("job user reading %s: got %q, want EACCES", p, res.Errors[p])
			}
		}
		for _, p := range req.Readable {
			if res.Errors[p] != "" {
				t.Errorf("job user reading %s: got %q, want readable", p, res.Errors[p])
			}
		}
		if res.Status != http.StatusOK {
			t.Errorf("job user GET agent: status %d (%s), want 200", res.Status, res.HTTPErr)
		}
		if res.SignalE != int(syscall.EPERM) {
			t.Errorf("job user kill(agent, 0): errno %d, want EPERM", res.SignalE)
		}
		if len(res.Hits) != 0 {
			t.Errorf("canary readable by the job user in %v", res.Hits)
		}
		if res.Scanned == 0 {
			t.Errorf("probe scanned no file, want at least the test binary")
		}
		t.Logf("job user scanned %d readable files (%d unreadable) for the canaries", res.Scanned, res.ScanErrs)
		if res.Cut != "" {
			t.Logf("the scan stopped at its time bound in %s (the test's own directories were read whole)", res.Cut)
		}
	})
}

// TestDropFailsClosed: in a cgo build the agent started without
// StartNoNewPrivs cannot set no_new_privs on all threads, and Drop must
// refuse rather than run half-hardened. In a CGO_ENABLED=0 build the same
// start succeeds, and that is checked instead.
func TestDropFailsClosed(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	agent := agentUser(t)
	base := publicDir(t)
	bin := sharedBinary
	state := filepath.Join(base, "agent")
	if err := PrepareDir(state, agent); err != nil {
		t.Fatal(err)
	}
	secrets, _ := testSecrets(t)
	p := startAgent(t, bin, agent, state, secrets, false)
	if cgoBuild() {
		if !strings.Contains(p.report.DropError, "no_new_privs") {
			t.Errorf("Drop without no_new_privs in a cgo build: got %q, want a no_new_privs error", p.report.DropError)
		}
		if err := p.cmd.Wait(); err == nil {
			t.Errorf("agent exit: got success, want failure")
		}
		return
	}
	if p.report.DropError != "" || p.report.UID != agent.UID {
		t.Errorf("Drop in a CGO_ENABLED=0 build: got %+v, want success as uid %d", p.report, agent.UID)
	}
}

// TestUnprivileged runs the bootstrap side as the job's user: no root, and
// sudo either absent or refusing (the job user has no sudoers entry).
func TestUnprivileged(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	job := jobUser(t)
	bin := sharedBinary
	var out struct {
		Mode        string   `json:"mode"`
		Warning     string   `json:"warning"`
		Lines       []string `json:"lines"`
		Enforce     string   `json:"enforce"`
		EnforceSep  bool     `json:"enforce_sep"`
		EnforceOff  string   `json:"enforce_off"`
		Ensure      string   `json:"ensure"`
		EnsureNoPrv bool     `json:"ensure_noprv"`
	}
	runAs(t, bin, job, "unprivileged", []string{"GO_TEST_PRIVILEGE_NEWUSER=gpsnever" + randHex(t, 4)}, nil, &out)
	if out.Mode != "none" {
		t.Errorf("Detect as the job user: got %q, want none", out.Mode)
	}
	if out.Warning != UnseparatedWarning || !strings.Contains(out.Warning, "running unseparated") {
		t.Errorf("warning: got %q, want UnseparatedWarning", out.Warning)
	}
	if len(out.Lines) != 2 || !strings.HasPrefix(out.Lines[1], "warning: running unseparated") {
		t.Errorf("summary lines: got %q, want the warning last", out.Lines)
	}
	if !out.EnforceSep || !strings.Contains(out.Enforce, "require_separation") {
		t.Errorf("Enforce(true): got %q, want ErrNotSeparated naming require_separation", out.Enforce)
	}
	if out.EnforceOff != "<nil>" {
		t.Errorf("Enforce(false): got %q, want nil", out.EnforceOff)
	}
	if !out.EnsureNoPrv {
		t.Errorf("EnsureUser as the job user: got %q, want ErrNoPrivilege", out.Ensure)
	}
}

package privilege

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

const basePasswd = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsvc:x:999:999::/nonexistent:/usr/sbin/nologin\n"
const baseGroup = "root:x:0:\ndaemon:x:1:\nsvc:x:999:\nshared:x:500:alice,bob\n"

func TestAppendAccount(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		passwd  string
		a       Account
		wantErr string
		wantP   string
		wantG   string
	}{
		{name: "appends", passwd: basePasswd, a: Account{Name: "goproxy-agent", UID: 998, GID: 998},
			wantP: basePasswd + "goproxy-agent:x:998:998::/nonexistent:/usr/sbin/nologin\n", wantG: baseGroup + "goproxy-agent:x:998:\n"},
		{name: "adds missing newline", passwd: strings.TrimSuffix(basePasswd, "\n"), a: Account{Name: "a", UID: 998, GID: 998, Shell: "/sbin/nologin", Home: "/var/empty"},
			wantP: basePasswd + "a:x:998:998::/var/empty:/sbin/nologin\n", wantG: baseGroup + "a:x:998:\n"},
		{name: "name taken", passwd: basePasswd, a: Account{Name: "svc", UID: 998, GID: 998}, wantErr: `user "svc" already exists`},
		{name: "uid taken", passwd: basePasswd, a: Account{Name: "x", UID: 999, GID: 998}, wantErr: "uid 999 is already used"},
		{name: "gid taken", passwd: basePasswd, a: Account{Name: "x", UID: 998, GID: 500}, wantErr: "gid 500 is already used"},
		{name: "group name taken", passwd: basePasswd, a: Account{Name: "shared", UID: 998, GID: 998}, wantErr: `group "shared" already exists`},
		{name: "root", passwd: basePasswd, a: Account{Name: "x", UID: 0, GID: 998}, wantErr: "never root"},
		{name: "bad name", passwd: basePasswd, a: Account{Name: "Bad:Name", UID: 998, GID: 998}, wantErr: "not a valid account name"},
		{name: "colon in field", passwd: basePasswd, a: Account{Name: "x", UID: 998, GID: 998, Comment: "a:b"}, wantErr: "must not contain"},
		{name: "malformed passwd", passwd: "root:x:0\n", a: Account{Name: "x", UID: 998, GID: 998}, wantErr: "line 1: 3 fields"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, g, err := AppendAccount([]byte(tc.passwd), []byte(baseGroup), tc.a)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("AppendAccount: got error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(p) != tc.wantP || string(g) != tc.wantG {
				t.Errorf("AppendAccount: got\n%s\n%s\nwant\n%s\n%s", p, g, tc.wantP, tc.wantG)
			}
		})
	}
}

func TestFreeSystemID(t *testing.T) {
	t.Parallel()
	id, err := FreeSystemID([]byte(basePasswd+"b:x:998:998::/:/bin/sh\n"), []byte(baseGroup+"c:x:997:\n"))
	if err != nil || id != 996 {
		t.Errorf("FreeSystemID = %d, %v; want 996 (999 uid, 998 uid, 997 gid taken)", id, err)
	}
}

func TestSecretsRedaction(t *testing.T) {
	t.Parallel()
	const canary = "canary-s3cr3t-4242"
	s := Secrets{CertPEM: []byte("cert"), KeyPEM: []byte("key " + canary), Token: "tok " + canary, Upstream: "https://u:" + canary + "@proxy.corp", Env: map[string]string{"HTTPS_PROXY": "http://u:" + canary + "@p:3128"}, Nonce: canary}
	var logBuf bytes.Buffer
	hclog.New(&hclog.LoggerOptions{Output: &logBuf, JSONFormat: true}).Info("x", "secrets", s)
	hclog.New(&hclog.LoggerOptions{Output: &logBuf}).Info("x", "secrets", s, "ptr", &s)
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "secrets", s)
	jsonb, _ := json.Marshal(map[string]any{"s": s, "p": &s})
	outs := map[string]string{
		"String":   s.String(),
		"GoString": s.GoString(),
		"json":     string(jsonb),
		"logs":     logBuf.String(),
		"error":    fmt.Errorf("wrapped: %v", s).Error(),
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		outs[verb] = fmt.Sprintf(verb, s)
		outs[verb+" ptr"] = fmt.Sprintf(verb, &s)
		outs[verb+" slice"] = fmt.Sprintf(verb, []Secrets{s})
	}
	for name, out := range outs {
		if strings.Contains(out, canary) || strings.Contains(out, "6b6579") /* "key" in hex */ {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
		if !strings.Contains(out, "redacted") {
			t.Errorf("%s: got %q, want a redacted description", name, out)
		}
	}
}

func TestSecretsRoundTrip(t *testing.T) {
	t.Parallel()
	want := Secrets{CertPEM: []byte("cert\n"), KeyPEM: []byte("key\x00\xff"), Token: "tok", Upstream: "https://u:pw@proxy.corp", Env: map[string]string{"NO_PROXY": "corp"}, Nonce: "n", JobUID: 1234}
	var b bytes.Buffer
	if err := WriteSecrets(&b, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSecrets(&b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Upstream != want.Upstream || got.Env["NO_PROXY"] != "corp" || got.Nonce != want.Nonce || got.JobUID != want.JobUID {
		t.Errorf("ReadSecrets(WriteSecrets(s)): upstream/env/nonce/uid %d/%v/%d/%d bytes, want %d/%v/%d/%d", len(got.Upstream), len(got.Env), len(got.Nonce), got.JobUID, len(want.Upstream), len(want.Env), len(want.Nonce), want.JobUID)
	}
	if legacy, err := ReadSecrets(strings.NewReader(`{"token":"t"}`)); err != nil || legacy.JobUID != -1 {
		t.Errorf("ReadSecrets without job_uid: JobUID %d, %v; want -1 (unknown: no peer check)", legacy.JobUID, err)
	}
	if !bytes.Equal(got.CertPEM, want.CertPEM) || !bytes.Equal(got.KeyPEM, want.KeyPEM) || got.Token != want.Token {
		t.Errorf("ReadSecrets(WriteSecrets(s)): got %d/%d/%d bytes, want %d/%d/%d", len(got.CertPEM), len(got.KeyPEM), len(got.Token), len(want.CertPEM), len(want.KeyPEM), len(want.Token))
	}
	got.Zero()
	if got.KeyPEM != nil || got.Token != "" {
		t.Errorf("Zero left %v", got)
	}
}

func TestReadSecretsErrors(t *testing.T) {
	t.Parallel()
	const canary = "canary-zz9"
	cases := []struct{ name, in, want string }{
		{"syntax", `{"key_pem": ` + canary + `}`, "malformed JSON at byte"},
		{"type", `{"token": ["` + canary + `"]}`, `field "token" has the wrong type`},
		{"too big", `{"token":"` + strings.Repeat("a", maxSecrets) + `"}`, "more than"},
		{"empty", ``, "malformed JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ReadSecrets(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadSecrets: got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "'z'") {
				t.Errorf("error quotes the input: %v", err)
			}
		})
	}
}

// fakeHost is an injectable host for the bootstrap side: which tools exist,
// what each command does, and a record of the commands run.
type fakeHost struct {
	mu    sync.Mutex
	etc   string
	tools map[string]bool
	cmds  []string
	do    func(cmd string) ([]byte, error)
}

func (h *fakeHost) system(euid int) *System {
	return New(
		WithEUID(func() int { return euid }),
		WithEtcDir(h.etc),
		WithLookPath(func(name string) (string, error) {
			if h.tools[name] {
				return "/usr/bin/" + name, nil
			}
			return "", exec.ErrNotFound
		}),
		WithRunner(func(_ context.Context, name string, args ...string) ([]byte, error) {
			cmd := strings.Join(append([]string{name}, args...), " ")
			h.mu.Lock()
			h.cmds = append(h.cmds, cmd)
			h.mu.Unlock()
			return h.do(cmd)
		}),
	)
}

func newEtc(t *testing.T) string {
	dir := t.TempDir()
	for name, data := range map[string]string{"passwd": basePasswd, "group": baseGroup} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "shadow"), []byte("root:*:19000:0:99999:7:::\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	return dir
}

// appendPasswd simulates what a real useradd does to the fake passwd.
func appendPasswd(t *testing.T, etc, name string) {
	p := filepath.Join(etc, "passwd")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, appendLine(b, name+":x:990:990::/nonexistent:/usr/sbin/nologin"), 0o644); err != nil {
		t.Error(err)
	}
}

// The Sudo path cannot use the real sudo here (none is installed, and CI
// has none), so it runs against an injected command runner.
func TestSudoMode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		tools    []string
		sudoOK   bool
		lockFail int
		wantMode Mode
		wantCmds []string
		wantErr  error
	}{
		{name: "no sudo", tools: []string{"useradd"}, wantMode: None, wantErr: ErrNoPrivilege},
		{name: "sudo refuses", tools: []string{"sudo", "useradd"}, wantMode: None, wantCmds: []string{"sudo -n true", "sudo -n true"}, wantErr: ErrNoPrivilege},
		{name: "sudo useradd", tools: []string{"sudo", "useradd"}, sudoOK: true, wantMode: Sudo, wantCmds: []string{
			"sudo -n true", "sudo -n true",
			"sudo -n useradd --system --no-create-home --home-dir /nonexistent --shell * --comment goproxy-setup agent --uid 990 --user-group agentx"}},
		{name: "lock contention retried", tools: []string{"sudo", "useradd"}, sudoOK: true, lockFail: 2, wantMode: Sudo, wantCmds: []string{
			"sudo -n true", "sudo -n true",
			"sudo -n useradd *", "sudo -n useradd *", "sudo -n useradd *"}},
		{name: "busybox", tools: []string{"sudo", "adduser", "addgroup"}, sudoOK: true, wantMode: Sudo, wantCmds: []string{
			"sudo -n true", "sudo -n true",
			"sudo -n addgroup -S -g 990 agentx",
			"sudo -n adduser -S -D -H -h /nonexistent -s * -G agentx -u 990 agentx"}},
		{name: "sudo without tools", tools: []string{"sudo"}, sudoOK: true, wantMode: Sudo, wantCmds: []string{"sudo -n true", "sudo -n true"}, wantErr: errors.New("neither useradd nor adduser")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &fakeHost{etc: newEtc(t), tools: map[string]bool{}}
			for _, tool := range tc.tools {
				h.tools[tool] = true
			}
			fails := tc.lockFail
			h.do = func(cmd string) ([]byte, error) {
				switch {
				case cmd == "sudo -n true":
					if tc.sudoOK {
						return nil, nil
					}
					return []byte("sudo: a password is required"), errors.New("exit status 1")
				case strings.HasPrefix(cmd, "sudo -n useradd"), strings.HasPrefix(cmd, "sudo -n adduser"):
					if fails > 0 {
						fails--
						return []byte("useradd: cannot lock /etc/passwd; try again later."), errors.New("exit status 1")
					}
					appendPasswd(t, h.etc, "agentx")
				}
				return nil, nil
			}
			s := h.system(1000)
			if got := s.Detect(context.Background()); got != tc.wantMode {
				t.Errorf("Detect = %v, want %v", got, tc.wantMode)
			}
			u, err := s.EnsureUser(context.Background(), "agentx", 990)
			switch {
			case tc.wantErr != nil:
				if err == nil || !(errors.Is(err, tc.wantErr) || strings.Contains(err.Error(), tc.wantErr.Error())) {
					t.Errorf("EnsureUser: got %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Errorf("EnsureUser: %v", err)
			case !u.Created || u.UID != 990:
				t.Errorf("EnsureUser = %+v, want created uid 990", u)
			}
			if len(h.cmds) != len(tc.wantCmds) {
				t.Fatalf("commands run: got %q, want %q", h.cmds, tc.wantCmds)
			}
			for i, want := range tc.wantCmds {
				re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(want), `\*`, ".*") + "$")
				if !re.MatchString(h.cmds[i]) {
					t.Errorf("command %d: got %q, want %q", i, h.cmds[i], want)
				}
			}
		})
	}
}

// TestWriteAccount: root without useradd/adduser (a minimal image) writes
// the account databases itself.
func TestWriteAccount(t *testing.T) {
	t.Parallel()
	h := &fakeHost{etc: newEtc(t), tools: map[string]bool{}, do: func(cmd string) ([]byte, error) {
		return nil, fmt.Errorf("unexpected command %q", cmd)
	}}
	s := h.system(0)
	u, err := s.EnsureUser(context.Background(), "goproxy-agent", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Created || u.UID != 998 || u.GID != 998 {
		t.Errorf("EnsureUser = %+v, want created 998/998 (999 taken)", u)
	}
	for name, want := range map[string]string{
		"passwd": basePasswd + "goproxy-agent:x:998:998:goproxy-setup agent:/nonexistent:",
		"group":  baseGroup + "goproxy-agent:x:998:\n",
		"shadow": "goproxy-agent:!::0:99999:7:::\n",
	} {
		b, err := os.ReadFile(filepath.Join(h.etc, name))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s: got %q, want it to contain %q", name, b, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(h.etc, "shadow")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("shadow mode after rewrite: %v %v, want 0640", fi.Mode(), err)
	}
	again, err := s.EnsureUser(context.Background(), "goproxy-agent", 998)
	if err != nil || again.Created {
		t.Errorf("EnsureUser again = %+v, %v; want the existing user", again, err)
	}
	_, err = s.EnsureUser(context.Background(), "goproxy-agent", 1234)
	if errkind.Of(err) != errkind.BadInput || !strings.Contains(err.Error(), "exists with uid 998") {
		t.Errorf("EnsureUser with another uid: got %v, want bad input naming uid 998", err)
	}
	_, err = s.EnsureUser(context.Background(), "root", 0)
	if errkind.Of(err) != errkind.BadInput {
		t.Errorf("EnsureUser(root): got %v, want bad input", err)
	}
	entries, _ := os.ReadDir(h.etc)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file %s left", e.Name())
		}
	}
}

func TestPrepareDir(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	u := &User{Name: "nobody-test", UID: 54321, GID: 54322}
	cases := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string
	}{
		{name: "new", setup: func(*testing.T, string) {}},
		{name: "new with parents", setup: func(t *testing.T, dir string) { os.Remove(filepath.Dir(dir)) }},
		{name: "empty foreign dir taken over", setup: func(t *testing.T, dir string) { mustMkdir(t, dir, 0o777, 1000) }},
		{name: "rerun keeps contents", setup: func(t *testing.T, dir string) {
			mustMkdir(t, dir, 0o700, u.UID)
			os.WriteFile(filepath.Join(dir, "client.key"), []byte("k"), 0o600)
		}},
		{name: "foreign non-empty refused", wantErr: "is not empty", setup: func(t *testing.T, dir string) {
			mustMkdir(t, dir, 0o755, 1000)
			os.WriteFile(filepath.Join(dir, "planted"), nil, 0o644)
		}},
		{name: "symlink refused", wantErr: "symbolic link", setup: func(t *testing.T, dir string) {
			target := filepath.Join(filepath.Dir(dir), "elsewhere")
			mustMkdir(t, target, 0o755, 0)
			if err := os.Symlink(target, dir); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "file refused", wantErr: "not a directory", setup: func(t *testing.T, dir string) { os.WriteFile(dir, nil, 0o600) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "parent", "state")
			os.MkdirAll(filepath.Dir(dir), 0o755)
			tc.setup(t, dir)
			err := PrepareDir(dir, u)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errkind.Of(err) != errkind.BadInput {
					t.Fatalf("PrepareDir: got %v, want bad input %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(dir)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode() != fs.ModeDir|0o700 || int(st.Uid) != u.UID || int(st.Gid) != u.GID {
				t.Errorf("after PrepareDir: mode %v owner %d:%d, want drwx------ %d:%d", fi.Mode(), st.Uid, st.Gid, u.UID, u.GID)
			}
		})
	}
	if err := PrepareDir("relative/dir", u); errkind.Of(err) != errkind.BadInput {
		t.Errorf("PrepareDir(relative): got %v, want bad input", err)
	}
	if err := PrepareDir(t.TempDir(), &User{Name: "root"}); err == nil {
		t.Errorf("PrepareDir for root: got nil, want an error")
	}
}

func mustMkdir(t *testing.T, dir string, mode fs.FileMode, uid int) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func TestWriteFile(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	u := &User{Name: "x", UID: 54321, GID: 54322}
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside")
	// A planted symlink at the name is replaced, never written through.
	if err := os.Symlink(outside, filepath.Join(dir, "client.key")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dir, "client.key", []byte("secret"), u); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != 0o600 || int(st.Uid) != u.UID || int(st.Gid) != u.GID {
		t.Errorf("key file: mode %v owner %d:%d, want -rw------- %d:%d", fi.Mode(), st.Uid, st.Gid, u.UID, u.GID)
	}
	if _, err := os.Stat(outside); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("symlink target was written: %v", err)
	}
	for _, bad := range []string{"../x", "a/b", "..", ""} {
		if err := WriteFile(dir, bad, nil, u); err == nil {
			t.Errorf("WriteFile(%q): got nil, want an error", bad)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only client.key", len(entries))
	}
}

func TestDropRefusesRoot(t *testing.T) {
	t.Parallel()
	for _, u := range []*User{nil, {Name: "root"}, {Name: "x", UID: 5}} {
		if err := Drop(u); err == nil || !strings.Contains(err.Error(), "non-root") {
			t.Errorf("Drop(%v): got %v, want a non-root error", u, err)
		}
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	u := &User{Name: "goproxy-agent", UID: 998, GID: 998, Created: true}
	cases := []struct {
		name     string
		r        Report
		warn     string
		enforced bool
	}{
		{"root", Report{Mode: Root, User: u, StateDir: "/var/lib/x"}, "", false},
		{"root job", Report{Mode: Root, User: u, StateDir: "/var/lib/x", JobRoot: true}, "a root job can still read", false},
		{"sudo", Report{Mode: Sudo, User: u, StateDir: "/var/lib/x"}, "passwordless sudo", false},
		{"none", Report{Mode: None}, "running unseparated", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if w := tc.r.Warning(); (tc.warn == "") != (w == "") || !strings.Contains(w, tc.warn) {
				t.Errorf("Warning() = %q, want %q", w, tc.warn)
			}
			err := tc.r.Enforce(true)
			if got := errors.Is(err, ErrNotSeparated); got != tc.enforced {
				t.Errorf("Enforce(true) = %v, want ErrNotSeparated %v", err, tc.enforced)
			}
			if tc.enforced && errkind.Of(err) != errkind.BadInput {
				t.Errorf("Enforce(true) kind = %v, want bad input", errkind.Of(err))
			}
			if err := tc.r.Enforce(false); err != nil {
				t.Errorf("Enforce(false) = %v, want nil", err)
			}
			lines := tc.r.Lines()
			if tc.r.Separated() && !strings.Contains(lines[0], "agent runs as goproxy-agent (uid 998, gid 998) (created user; via "+tc.r.Mode.String()) {
				t.Errorf("Lines()[0] = %q", lines[0])
			}
		})
	}
}

func TestLookupUser(t *testing.T) {
	t.Parallel()
	if _, err := LookupUser("root"); errkind.Of(err) != errkind.BadInput {
		t.Errorf("LookupUser(root): got %v, want bad input (never root)", err)
	}
	if _, err := LookupUser("gpsabsent0000"); errkind.Of(err) != errkind.BadInput || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("LookupUser(absent): got %v, want bad input naming it", err)
	}
	u, err := LookupUser("daemon")
	if err != nil || u.UID != 1 {
		t.Errorf("LookupUser(daemon) = %v, %v; want uid 1", u, err)
	}
}

// TestHandoffCarriesNetworkEnv: the proxy settings reach an agent started
// through sudo (which resets the environment) on the handoff pipe.
func TestHandoffCarriesNetworkEnv(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://user:CANARY-pw@127.0.0.1:3128")
	t.Setenv("NO_PROXY", "corp.example")
	h := Secrets{Token: "t", Env: NetworkEnv()}
	if h.Env["HTTPS_PROXY"] == "" || h.Env["NO_PROXY"] != "corp.example" {
		t.Fatalf("NetworkEnv = %v, want HTTPS_PROXY and NO_PROXY", h.Env)
	}
	if strings.Contains(fmt.Sprintf("%v %#v", h, h), "CANARY") {
		t.Errorf("formatted handoff leaks the proxy credentials")
	}
	t.Setenv("HTTPS_PROXY", "")
	t.Setenv("NO_PROXY", "")
	if err := h.ApplyEnv(); err != nil {
		t.Fatal(err)
	}
	if got := os.Getenv("HTTPS_PROXY"); got != "http://user:CANARY-pw@127.0.0.1:3128" {
		t.Errorf("after ApplyEnv HTTPS_PROXY = %q", got)
	}
}

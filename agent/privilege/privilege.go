// Package privilege owns least privilege and key custody for goproxy-setup:
// whether the bootstrap can become root at all (Detect), the dedicated
// unprivileged agent user (EnsureUser), the agent's private directory and
// key file (PrepareDir, WriteFile, TakeCustody, ReleaseCustody), the one
// handoff of everything secret (key, capability token, upstream list, proxy
// settings) to the agent over a pipe rather than the environment, the
// command line or a world-readable file (Secrets, WriteSecrets,
// ReadSecrets), the agent's irreversible
// privilege drop with its verification (Drop, StartNoNewPrivs), and the
// summary line that says what was done or warns that the job runs
// unseparated (Report).
//
// The flow it is designed for:
//
//	bootstrap (job user or root)          agent (started as root)
//	mode := Detect(ctx)                   s, _ := ReadSecrets(os.Stdin)
//	u, _ := EnsureUser(ctx, name, uid)    TakeCustody(dir, &s, u)
//	start agent as root (StartNoNewPrivs   ln := listen on 127.0.0.1
//	  when root; "sudo -n" when Sudo),    Drop(u)  // fail closed: exit on error
//	  WriteSecrets to its stdin           serve; ReleaseCustody(dir) on exit
//
// Threat model: docs/threat-model.md.
package privilege

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// Mode is how the bootstrap can obtain root to separate the agent from the
// job.
type Mode int

const (
	// None: no way to root; the agent runs as the job's user, unseparated.
	None Mode = iota
	// Sudo: "sudo -n" works without a password (hosted runners).
	Sudo
	// Root: the bootstrap runs with effective uid 0 (containers, images).
	Root
)

// String returns "none", "sudo" or "root".
func (m Mode) String() string {
	switch m {
	case Sudo:
		return "sudo"
	case Root:
		return "root"
	}
	return "none"
}

// ErrNoPrivilege is returned by operations that need root when Detect found
// no way to it.
var ErrNoPrivilege = errors.New("no root and no passwordless sudo")

// Runner runs a command to completion and returns its combined output. It is
// how System runs sudo, useradd and friends; tests inject their own.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

func execRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdin = nil
	return cmd.CombinedOutput()
}

// System is the host the bootstrap runs on: how commands run, where the
// account databases live, which effective uid it has. The zero value is not
// usable; use New.
type System struct {
	run      Runner
	lookPath func(string) (string, error)
	euid     func() int
	etc      string
	log      hclog.Logger
}

// Option configures a System.
type Option func(*System)

// WithRunner sets how external commands (sudo, useradd, adduser) run.
func WithRunner(r Runner) Option { return func(s *System) { s.run = r } }

// WithLookPath sets how commands are found (exec.LookPath by default).
func WithLookPath(f func(string) (string, error)) Option {
	return func(s *System) { s.lookPath = f }
}

// WithEUID sets how the effective uid is read (os.Geteuid by default).
func WithEUID(f func() int) Option { return func(s *System) { s.euid = f } }

// WithEtcDir sets the directory holding passwd, group and shadow ("/etc" by
// default). The account tools always edit the real /etc; a different
// directory only makes sense together with a WithLookPath that finds none of
// them, so that the built-in writer is used.
func WithEtcDir(dir string) Option { return func(s *System) { s.etc = dir } }

// WithLogger sets the logger (silent by default).
func WithLogger(l hclog.Logger) Option { return func(s *System) { s.log = l } }

// New returns a System for the running host, adjusted by opts.
func New(opts ...Option) *System {
	s := &System{run: execRunner, lookPath: exec.LookPath, euid: os.Geteuid, etc: "/etc", log: hclog.NewNullLogger()}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Detect returns Root when the effective uid is 0, Sudo when "sudo -n true"
// succeeds (sudo installed and allowed without a password), and None
// otherwise.
func Detect(ctx context.Context) Mode { return New().Detect(ctx) }

// Detect is the package-level Detect on s.
func (s *System) Detect(ctx context.Context) Mode {
	if s.euid() == 0 {
		return Root
	}
	if _, err := s.lookPath("sudo"); err != nil {
		s.log.Debug("no sudo in PATH", "error", err)
		return None
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := s.run(ctx, "sudo", "-n", "true"); err != nil {
		s.log.Debug("sudo -n true failed", "error", err, "output", strings.TrimSpace(string(out)))
		return None
	}
	return Sudo
}

// User is the dedicated agent account.
type User struct {
	// Name is the account name.
	Name string
	// UID and GID are its user id and primary group id.
	UID, GID int
	// Created is true when EnsureUser created the account.
	Created bool
}

// String returns "name (uid N, gid M)".
func (u *User) String() string {
	if u == nil {
		return "<none>"
	}
	return fmt.Sprintf("%s (uid %d, gid %d)", u.Name, u.UID, u.GID)
}

// EnsureUser returns the system account name, creating it (with its own
// group, no login shell and no home directory) when it is absent. uid 0 lets
// the system choose the id. It needs Root or Sudo (ErrNoPrivilege otherwise,
// and only when the account must be created).
func EnsureUser(ctx context.Context, name string, uid int) (*User, error) {
	return New().EnsureUser(ctx, name, uid)
}

// EnsureUser is the package-level EnsureUser on s.
func (s *System) EnsureUser(ctx context.Context, name string, uid int) (*User, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if uid < 0 {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("agent uid %d is negative: use 0 to let the system choose, or a free id", uid))
	}
	if u, err := s.lookup(name, uid); u != nil || err != nil {
		return u, err
	}
	mode := s.Detect(ctx)
	if mode == None {
		return nil, fmt.Errorf("create agent user %q: %w", name, ErrNoPrivilege)
	}
	var err error
	switch {
	case s.has("useradd"):
		err = s.useradd(ctx, mode, name, uid)
	case s.has("adduser") && s.has("addgroup"):
		err = s.busybox(ctx, mode, name, uid)
	case mode == Root:
		err = s.writeAccount(name, uid)
	default:
		err = errors.New("neither useradd nor adduser is installed, and writing /etc/passwd needs root, not sudo: install one or create the user in the image")
	}
	if err != nil {
		return nil, fmt.Errorf("create agent user %q: %w", name, err)
	}
	u, err := s.lookup(name, uid)
	if err != nil {
		return nil, err
	}
	if u == nil {
		return nil, fmt.Errorf("create agent user %q: it is still not in %s/passwd", name, s.etc)
	}
	u.Created = true
	s.log.Info("created agent user", "user", u.String())
	return u, nil
}

// LookupUser returns the existing account name from /etc/passwd, checked to
// be fit for the agent (not root). It needs no privilege: the agent process
// uses it to resolve --run-as before Drop.
func LookupUser(name string) (*User, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	u, err := New().lookup(name, 0)
	if err == nil && u == nil {
		err = errkind.Mark(errkind.BadInput, fmt.Errorf("agent user %q does not exist: create it (the bootstrap's EnsureUser does) or name another", name))
	}
	return u, err
}

// lookup returns the existing account (nil when absent) after checking that
// it is fit to be the agent user.
func (s *System) lookup(name string, uid int) (*User, error) {
	passwd, err := os.ReadFile(filepath.Join(s.etc, "passwd"))
	if err != nil {
		return nil, fmt.Errorf("read account database: %w", err)
	}
	a, ok, err := LookupAccount(passwd, name)
	if err != nil || !ok {
		return nil, err
	}
	if a.UID == 0 || a.GID == 0 {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("agent user %q has uid %d gid %d: it must not be root; choose another name", name, a.UID, a.GID))
	}
	if uid != 0 && a.UID != uid {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("agent user %q exists with uid %d, not the configured %d: configure uid %d or another name", name, a.UID, uid, a.UID))
	}
	return &User{Name: a.Name, UID: a.UID, GID: a.GID}, nil
}

func (s *System) has(tool string) bool {
	_, err := s.lookPath(tool)
	return err == nil
}

// command runs name args, through "sudo -n" in Sudo mode, retrying while the
// account databases are locked by a concurrent useradd.
func (s *System) command(ctx context.Context, mode Mode, name string, args ...string) error {
	if mode == Sudo {
		args = append([]string{"-n", name}, args...)
		name = "sudo"
	}
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		var out []byte
		out, err = s.run(ctx, name, args...)
		if err == nil {
			return nil
		}
		msg := strings.TrimSpace(string(out))
		err = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
		if !strings.Contains(strings.ToLower(msg), "lock") {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(50*(attempt+1)) * time.Millisecond):
		}
	}
	return err
}

func (s *System) nologin() string {
	for _, p := range []string{"/usr/sbin/nologin", "/sbin/nologin"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/bin/false"
}

func (s *System) useradd(ctx context.Context, mode Mode, name string, uid int) error {
	args := []string{"--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", s.nologin(), "--comment", "goproxy-setup agent"}
	if uid != 0 {
		args = append(args, "--uid", strconv.Itoa(uid))
	}
	group, err := os.ReadFile(filepath.Join(s.etc, "group"))
	if err != nil {
		return fmt.Errorf("read group database: %w", err)
	}
	_, members, exists, err := lookupGroup(group, name)
	if err != nil {
		return err
	}
	switch {
	case exists && len(members) > 0:
		return errkind.Mark(errkind.BadInput, fmt.Errorf("group %q exists and has members %v: the agent needs a group of its own; choose another name", name, members))
	case exists:
		args = append(args, "--gid", name)
	default:
		args = append(args, "--user-group")
	}
	return s.command(ctx, mode, "useradd", append(args, name)...)
}

// busybox creates the account with BusyBox's addgroup/adduser (Alpine).
func (s *System) busybox(ctx context.Context, mode Mode, name string, uid int) error {
	gargs := []string{"-S"}
	if uid != 0 {
		gargs = append(gargs, "-g", strconv.Itoa(uid))
	}
	if err := s.command(ctx, mode, "addgroup", append(gargs, name)...); err != nil {
		return err
	}
	uargs := []string{"-S", "-D", "-H", "-h", "/nonexistent", "-s", s.nologin(), "-G", name}
	if uid != 0 {
		uargs = append(uargs, "-u", strconv.Itoa(uid))
	}
	return s.command(ctx, mode, "adduser", append(uargs, name)...)
}

// writeAccount appends the account to passwd, group (and shadow when present)
// directly, holding the shadow suite's lock file (.pwd.lock) like lckpwdf(3),
// each file replaced atomically with its mode and owner kept.
func (s *System) writeAccount(name string, uid int) error {
	unlock, err := lockPwd(filepath.Join(s.etc, ".pwd.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	passwdPath, groupPath := filepath.Join(s.etc, "passwd"), filepath.Join(s.etc, "group")
	passwd, err := os.ReadFile(passwdPath)
	if err != nil {
		return fmt.Errorf("read passwd: %w", err)
	}
	group, err := os.ReadFile(groupPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read group: %w", err)
	}
	id := uid
	if id == 0 {
		if id, err = FreeSystemID(passwd, group); err != nil {
			return err
		}
	}
	gid := id
	if used, err := usedIDs(nil, group); err != nil {
		return err
	} else if used[gid] {
		if gid, err = FreeSystemID(passwd, group); err != nil {
			return err
		}
	}
	np, ng, err := AppendAccount(passwd, group, Account{Name: name, UID: id, GID: gid, Shell: s.nologin(), Comment: "goproxy-setup agent"})
	if err != nil {
		return err
	}
	shadowPath := filepath.Join(s.etc, "shadow")
	if shadow, err := os.ReadFile(shadowPath); err == nil {
		// "!" is a locked password: the account can never log in.
		if err := replaceFile(shadowPath, appendLine(shadow, name+":!::0:99999:7:::"), 0o640); err != nil {
			return err
		}
	}
	if err := replaceFile(groupPath, ng, 0o644); err != nil {
		return err
	}
	return replaceFile(passwdPath, np, 0o644)
}

// replaceFile writes data to path atomically (temp file in the same
// directory, fsync, rename), keeping the existing file's mode and owner, or
// using mode for a new file.
func replaceFile(path string, data []byte, mode fs.FileMode) error {
	uid, gid := -1, -1
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
		uid, gid = fileOwner(st)
	}
	if os.Geteuid() != 0 {
		uid = -1
	}
	return atomicfile.WriteFileOwned(path, data, mode, uid, gid)
}

// WriteFile writes data as dir/name with mode 0600, atomically (temp file and
// rename inside dir, never following a symlink out of it). When running as
// root and u is not nil, the file is owned by u; otherwise by the caller.
func WriteFile(dir, name string, data []byte, u *User) (err error) {
	if name != filepath.Base(name) || name == "." || name == ".." {
		return fmt.Errorf("write %s: %q is not a plain file name", dir, name)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer root.Close()
	uid, gid := -1, -1
	if u != nil && os.Geteuid() == 0 {
		uid, gid = u.UID, u.GID
	}
	if err := atomicfile.WriteIn(root, name, data, 0o600, uid, gid); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
